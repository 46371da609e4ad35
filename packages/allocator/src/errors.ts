import { isFleetError, type Logger } from '@smelter-fleet/core';
import { ServerError, Status, type CallContext, type ServerMiddleware } from 'nice-grpc';

/** Turns FleetErrors into gRPC statuses of the same name; anything else is INTERNAL (and logged). */
export function errorMiddleware(logger: Logger): ServerMiddleware {
  return async function* (call, context: CallContext) {
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      if (err instanceof ServerError) throw err;
      if (isFleetError(err)) throw new ServerError(Status[err.code], err.message);
      if (context.signal.aborted) throw new ServerError(Status.CANCELLED, 'call cancelled');
      logger.error('internal error', { method: call.method.path, error: String(err) });
      throw new ServerError(Status.INTERNAL, 'internal error');
    }
  };
}

/** The name of a gRPC status code (`Status` of nice-grpc), e.g. 5 -> 'NOT_FOUND'; undefined for an unknown code. */
export const grpcStatusName = (code: number): string | undefined => Status[code];
