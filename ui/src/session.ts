import { createContext, useContext } from 'react';
import type { Api } from './api';
import type { Role } from './gen/limiquantix/storage/v1/access_pb';

/** The signed-in user: the API with their token, and whether they may change things. */
export interface Session {
  api: Api;
  name: string;
  role: Role;
  canWrite: boolean;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('no session');
  return s;
}
