// The command line's exit codes, and the error that carries one.
export const EXIT_OK = 0;
/** A missing file or model, a failed download, or any other failure. */
export const EXIT_FAILURE = 1;
/** Bad arguments: the command's usage was printed. */
export const EXIT_USAGE = 2;
/** The run went through, but some images failed (after the summary). */
export const EXIT_SOME_IMAGES_FAILED = 3;

/** A failure with a message for the user and the exit code it ends with. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = EXIT_FAILURE) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}
