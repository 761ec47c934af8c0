// The prior's arithmetic for the page (app.js): a seeded Gaussian stream, the standard-normal quantile, the
// marginal factor of two latent dimensions, and latent names and text.

export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussianStream(seed) {
  const uniform = mulberry32(seed);
  return () => {
    const u1 = 1 - uniform(); // (0, 1]
    const u2 = uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

// Standard-normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
export function normalQuantile(p) {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q) =>
    (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  );
}

// The prior's marginal over dimensions (i, j) of a covariance as a lower-triangular factor
// [[m00, 0], [m10, m11]] (for the leading two dimensions: the leading block of the Cholesky factor L);
// m10 = m11 = 0 when j is null (a 1-D latent).
export function marginalFactor(cov, i, j) {
  const m00 = Math.sqrt(cov[i][i]);
  if (j === null) return [m00, 0, 0];
  const m10 = cov[j][i] / m00;
  return [m00, m10, Math.sqrt(Math.max(0, cov[j][j] - m10 * m10))];
}

const SUBSCRIPTS = "₀₁₂₃₄₅₆₇₈₉";
export function zName(k) {
  return "z" + String(k).replace(/[0-9]/g, (c) => SUBSCRIPTS[c]);
}

// The latent as text: every value up to 8 dimensions, the first 8 and a count beyond.
export function latentText(z) {
  const shown = z.slice(0, 8).map((v) => v.toFixed(2));
  return `z = (${shown.join(", ")}${z.length > 8 ? `, … ${z.length - 8} more` : ""})`;
}
