// Hub model ids: "owner/name", optionally "@revision" (a branch, tag or commit).
export interface HubId {
  repo: string;
  revision: string;
}

const HUB_ID = /^([A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$/;

/** The parsed id, or undefined when `text` is not shaped like one. */
export function parseHubId(text: string): HubId | undefined {
  const match = HUB_ID.exec(text);
  if (!match || match[1]!.includes('..')) return undefined;
  return { repo: match[1]!, revision: match[2] ?? 'main' };
}
