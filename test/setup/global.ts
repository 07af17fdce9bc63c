// vitest global setup: make sure the cached tiny checkpoint exists and is
// current before any suite runs, so suites never race to generate it.
import { ensureTinyCheckpoint } from '../fixtures/tiny-checkpoint.js';

export default async function setup(): Promise<void> {
  await ensureTinyCheckpoint();
}
