// Every file the page loads is checked against the sha256 its parent pins (index.html pins site.json, which
// pins the runtime and each model's manifest, which pins the decoders); a mismatch is an IntegrityError.

export class IntegrityError extends Error {}

export async function sha256Hex(buffer) {
  if (!crypto.subtle) {
    throw new IntegrityError(
      "crypto.subtle is unavailable (the page is not in a secure context): serve it on localhost or https",
    );
  }
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Fetch a file and check it against {path, sha256}: the bytes are only returned when the digest matches.
export async function fetchVerified({ path, sha256 }) {
  const response = await fetch(path);
  if (!response.ok) {
    throw new IntegrityError(`${path}: HTTP ${response.status}; rebuild the site (make web) or copy it again`);
  }
  const bytes = await response.arrayBuffer();
  const actual = await sha256Hex(bytes);
  if (actual !== sha256) {
    throw new IntegrityError(
      `sha256 mismatch for ${path}: expected ${sha256}, got ${actual}. The file is corrupt or was ` +
        "modified, so it was not loaded; rebuild the site (make web) or copy it again.",
    );
  }
  return bytes;
}
