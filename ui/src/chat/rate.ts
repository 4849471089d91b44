// Tokens per second as this window receives them, measured the way the engine
// measures its decode rate (tokens after the first, over the time after the
// first), but on batch arrival times. The badge of a finished reply shows the
// engine's own figure; this one is the live figure while a reply streams, and
// the check that streaming through the shell costs the user nothing.

export interface TokenRate {
  /** Tokens received so far. */
  tokens: number;
  /** Tokens in the first batch (they arrived before the clock started). */
  firstTokens: number;
  /** Arrival of the first and the latest batch, in ms (performance.now()). */
  firstAt: number | null;
  lastAt: number | null;
}

export const NO_TOKENS: TokenRate = { tokens: 0, firstTokens: 0, firstAt: null, lastAt: null };

export function addTokens(rate: TokenRate, tokens: number, at: number): TokenRate {
  if (tokens <= 0) return rate;
  if (rate.firstAt === null) return { tokens, firstTokens: tokens, firstAt: at, lastAt: at };
  return { ...rate, tokens: rate.tokens + tokens, lastAt: Math.max(at, rate.lastAt ?? at) };
}

/** null until two batches span a measurable time. */
export function tokensPerSecond(rate: TokenRate): number | null {
  if (rate.firstAt === null || rate.lastAt === null) return null;
  const seconds = (rate.lastAt - rate.firstAt) / 1000;
  const after = rate.tokens - rate.firstTokens;
  return seconds > 0 && after > 0 ? after / seconds : null;
}
