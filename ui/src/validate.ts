// The API's own rules for what a user types, checked as they type (the API
// checks again and its refusal is shown in place).

const NAME_MAX_LEN = 63;

export function nameError(what: string, s: string): string {
  if (!s) return `the ${what} name is required`;
  if (s.length > NAME_MAX_LEN) return `at most ${NAME_MAX_LEN} characters`;
  if (!/^[a-z0-9]/.test(s)) return 'start with a lowercase letter or a digit';
  const bad = s.match(/[^a-z0-9._-]/);
  if (bad) return `the character '${bad[0]}' is not allowed: use a-z, 0-9, '.', '_' and '-'`;
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s)) return 'a name may not look like an id (a UUID)';
  return '';
}

export function absolutePathError(s: string): string {
  if (!s) return 'required';
  if (!s.startsWith('/')) return 'an absolute path (starting with /)';
  if (s.split('/').includes('..')) return "no '..' components";
  return '';
}

/** host or host:port (IPv6 as [addr]:port). */
export function hostPortError(s: string, required = true): string {
  if (!s) return required ? 'required' : '';
  const m = s.match(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}))?$/);
  if (!m) return 'host or host:port (IPv6 as [address]:port)';
  if (m[3] && (Number(m[3]) < 1 || Number(m[3]) > 65535)) return 'the port is 1 to 65535';
  return '';
}

export function iqnError(s: string): string {
  if (!s) return 'required';
  if (/^iqn\.\d{4}-\d{2}\.[a-z0-9.:-]+$/.test(s) && s.length <= 223) return '';
  if (/^eui\.[0-9a-fA-F]{16}$/.test(s) || /^naa\.([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$/.test(s)) return '';
  return 'iqn.YYYY-MM.reversed.domain[:name] (lower case), eui.<16 hex> or naa.<16 or 32 hex>';
}

export function chapSecretError(s: string): string {
  if (!s) return '';
  if (s.length < 12 || s.length > 255) return 'a CHAP secret is 12 to 255 characters';
  return '';
}
