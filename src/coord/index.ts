/** The coordination layer's public surface, and the one place that picks a backend. */
import type { Coordinator } from './coordinator.ts';
import { InProcessCoordinator, type InProcessCoordinatorOptions } from './in-process-coordinator.ts';
import { RedisCoordinator, type RedisCoordinatorOptions } from './redis-coordinator.ts';

export type {
  AcquireOptions,
  ClaimOptions,
  Coordinator,
  Grants,
  HeadAnnouncements,
  HeadListener,
  IsCurrentOptions,
  JsonObject,
  JsonValue,
  Lock,
  RefreshClaim,
  RefreshLease,
  RefreshSchedule,
  ResyncListener,
  ResyncReason,
  WriterLocks,
} from './coordinator.ts';
export {
  CheckedCoordinator,
  checkedCoordinator,
  type CheckedCoordinatorOptions,
  type CoordCall,
  type CoordObserver,
  type CoordOperation,
} from './checked-coordinator.ts';
export { CoordError, isCoordError, type CoordBackend, type CoordErrorCode, type CoordErrorDetail, type CoordErrorOptions } from './coord-error.ts';
export { InProcessCoordinator, type InProcessCoordinatorOptions } from './in-process-coordinator.ts';
export { RedisCoordinator, DEFAULT_KEY_PREFIX, DEFAULT_COMMAND_TIMEOUT_MS, type RedisCoordinatorOptions } from './redis-coordinator.ts';
export { withLock, requireCurrent, type WithLockOptions } from './with-lock.ts';

export type CoordinatorConfig =
  | ({ backend: 'in-process' } & InProcessCoordinatorOptions)
  | ({ backend: 'redis' } & RedisCoordinatorOptions);

/** Build the configured coordinator (for the composition root). */
export function createCoordinator(config: CoordinatorConfig): Coordinator {
  if (config.backend === 'redis') {
    const { backend: _backend, ...options } = config;
    return new RedisCoordinator(options);
  }
  const { backend: _backend, ...options } = config;
  return new InProcessCoordinator(options);
}
