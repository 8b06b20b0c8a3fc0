// The API as the UI uses it: clients generated from the proto tree
// (protoc-gen-es), speaking gRPC-Web to the control plane that served this
// page, with the signed-in user's bearer token on every call.
import { Code, ConnectError, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { AccessService, Role } from './gen/limiquantix/storage/v1/access_pb';
import {
  NodeService,
  NodeState,
  PoolState,
  StoragePoolService,
  TaskService,
  TaskState,
  VolumeService,
  VolumeState,
} from './gen/limiquantix/storage/v1/control_pb';
import { PoolKind, PoolPhase, VolumeFormat } from './gen/limiquantix/storage/v1/types_pb';

const TOKEN_KEY = 'lq.token';

export function storedToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function storeToken(token: string) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export interface Api {
  pools: Client<typeof StoragePoolService>;
  volumes: Client<typeof VolumeService>;
  tasks: Client<typeof TaskService>;
  nodes: Client<typeof NodeService>;
  access: Client<typeof AccessService>;
}

export function makeApi(token: string): Api {
  const bearer: Interceptor = (next) => async (req) => {
    if (token) req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [bearer] });
  return {
    pools: createClient(StoragePoolService, transport),
    volumes: createClient(VolumeService, transport),
    tasks: createClient(TaskService, transport),
    nodes: createClient(NodeService, transport),
    access: createClient(AccessService, transport),
  };
}

/** The API's refusal as the user reads it: its code and message. */
export function errorText(e: unknown): string {
  const err = ConnectError.from(e);
  return `${Code[err.code] ?? 'Error'}: ${err.rawMessage}`;
}

export function isPermissionError(e: unknown): boolean {
  const code = ConnectError.from(e).code;
  return code === Code.PermissionDenied || code === Code.Unauthenticated;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: bigint | number): string {
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${UNITS[i]}`;
}

export const SIZE_UNITS = ['MiB', 'GiB', 'TiB'] as const;
export type SizeUnit = (typeof SIZE_UNITS)[number];

/** A size typed as a number and a unit, in bytes; null when it is not a positive whole size. */
export function toBytes(amount: string, unit: SizeUnit): bigint | null {
  if (!/^\d+(\.\d+)?$/.test(amount.trim())) return null;
  const shift = { MiB: 20, GiB: 30, TiB: 40 }[unit];
  const bytes = BigInt(Math.round(Number(amount) * 2 ** 20)) << BigInt(shift - 20);
  return bytes > 0n ? bytes : null;
}

export function formatTime(unixSeconds: bigint): string {
  if (unixSeconds === 0n) return '';
  return new Date(Number(unixSeconds) * 1000).toLocaleString();
}

export function enumName(e: Record<string, string | number>, value: number): string {
  const name = e[value];
  return typeof name === 'string' ? name.toLowerCase().replace(/_/g, ' ') : String(value);
}

export const volumeState = (s: VolumeState) => enumName(VolumeState, s);
export const poolState = (s: PoolState) => enumName(PoolState, s);
export const poolPhase = (s: PoolPhase) => enumName(PoolPhase, s);
export const poolKind = (k: PoolKind) => enumName(PoolKind, k);
export const nodeState = (s: NodeState) => enumName(NodeState, s);
export const taskState = (s: TaskState) => enumName(TaskState, s);
export const volumeFormat = (f: VolumeFormat) => enumName(VolumeFormat, f);
export const roleName = (r: Role) => enumName(Role, r);

export { Role };
