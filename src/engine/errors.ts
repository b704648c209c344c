/**
 * Typed refusals of the engine. Each code names one reason an upload or a
 * stored state is not trusted; `detail` carries the data (role, versions,
 * key ids, the verification result) so the edge can explain it precisely.
 */
import { TufociError } from '../errors.ts';

export type EngineErrorCode =
  | 'TOO_LARGE' // the file exceeds the policy's size limit for its role
  | 'MALFORMED' // not UTF-8 JSON, or not well-formed TUF metadata
  | 'DUPLICATE_KEY' // an object names a member twice: parsers disagree on which one counts
  | 'NOT_INTEGER' // a number with a fraction or exponent (3.0, 3.97e2), -0, or beyond ±2^53
  | 'LONE_SURROGATE' // a string escapes half of a UTF-16 surrogate pair
  | 'TOO_DEEP' // nesting deeper than the reader's bound
  | 'TOO_MANY_MEMBERS' // an object wider than the reader's bound for its depth
  | 'BAD_DATE' // `expires` is not a real calendar instant (2027-02-30, 24:00:00)
  | 'NOT_CANONICAL' // the signed part does not survive a parse/serialize round trip
  | 'WRONG_TYPE' // `_type` is not the role expected
  | 'UNSUPPORTED_SPEC_VERSION'
  | 'THRESHOLD_NOT_MET' // fewer distinct authorized keys signed than the threshold
  | 'VERSION_ROLLBACK' // version not above the trusted one
  | 'VERSION_SKIP' // version above trusted + 1
  | 'EXPIRED' // the upload is already expired
  | 'EXPIRY_TOO_FAR' // the upload expires later than the policy allows
  | 'DELEGATOR_EXPIRED' // a role on the delegation chain is expired: its keys cannot be trusted
  | 'PATH_NOT_DELEGATED' // a target lies outside the delegated paths / bin
  | 'BAD_TARGET' // a target entry is not a well-formed OCI manifest descriptor
  | 'UNSUPPORTED_KEY' // key type or scheme outside the policy
  | 'BAD_KEY' // key cannot be parsed, or its key id is not the hash of the key
  | 'UNKNOWN_ROLE' // nothing delegates this role
  | 'BAD_ROLE_NAME'
  | 'BAD_DELEGATION' // delegation structure invalid or ambiguous
  | 'POLICY_VIOLATION' // a threshold or count outside the role policy
  | 'ONLINE_KEYS_MISSING' // the root names online keys the service does not hold
  | 'ONLINE_KEY_REVOKED' // the root lists an online key revoked as compromised
  | 'SIGNER_MISSING' // the online signers cannot meet the threshold
  | 'SCOPE_MISSING' // a root uploaded for a repository names no scope
  | 'SCOPE_MISMATCH' // a root names a scope other than the repository it is uploaded for
  | 'INCONSISTENT' // stored files disagree with each other (mix-and-match)
  | 'NO_SNAPSHOT'; // an operation needs snapshot/timestamp that do not exist yet

export class EngineError extends TufociError<EngineErrorCode> {}
