import { md5 } from 'hash-wasm';

/** Base64 of the MD5 digest: the form the Content-MD5 header carries (RFC 1864). */
export async function md5Base64(data: ArrayBuffer | Uint8Array): Promise<string> {
  const hex = await md5(data instanceof Uint8Array ? data : new Uint8Array(data));
  return hexToBase64(hex);
}

export function hexToBase64(hex: string): string {
  let binary = '';
  for (let i = 0; i < hex.length; i += 2) binary += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
  return btoa(binary);
}
