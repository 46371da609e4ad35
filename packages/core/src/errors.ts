/** Error codes shared by every edge (gRPC status, HTTP status and CLI exit all derive from these). */
export type FleetErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'INTERNAL';

export interface FleetErrorOptions {
  /** Dotted path of the offending request field, for INVALID_ARGUMENT. */
  field?: string;
  cause?: unknown;
}

export class FleetError extends Error {
  override readonly name = 'FleetError';
  readonly code: FleetErrorCode;
  readonly field: string | undefined;

  constructor(code: FleetErrorCode, message: string, options: FleetErrorOptions = {}) {
    super(options.field ? `${options.field}: ${message}` : message, { cause: options.cause });
    this.code = code;
    this.field = options.field;
  }
}

export function isFleetError(err: unknown, code?: FleetErrorCode): err is FleetError {
  return err instanceof FleetError && (code === undefined || err.code === code);
}

export const invalidArgument = (field: string, message: string) =>
  new FleetError('INVALID_ARGUMENT', message, { field });
