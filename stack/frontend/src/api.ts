import { FIELDS, type Measurements } from "./measurements";

/** Relative, so the same build works behind any host name: nginx (or Vite in dev) forwards it. */
export const PREDICT_URL = "/api/predict";

export interface Prediction {
  species: string;
  /** Species name to probability in [0, 1], in the order the API sent them. */
  probabilities: Record<string, number>;
}

/** A failure the page can show as is: `message` is a sentence for people, never raw JSON. */
export class PredictError extends Error {
  readonly status: number | undefined;

  constructor(message: string, status?: number) {
    super(message);
    this.name = "PredictError";
    this.status = status;
  }
}

type Fetch = typeof fetch;

/** Asks the API for the species of one flower. Throws only `PredictError`. */
export async function predict(measurements: Measurements, fetchImpl: Fetch = fetch): Promise<Prediction> {
  let response: Response;
  try {
    response = await fetchImpl(PREDICT_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ items: [measurements] }),
    });
  } catch {
    // fetch rejects only when no HTTP answer arrived at all (offline, DNS, refused).
    throw new PredictError(unreachable());
  }

  if (!response.ok) {
    throw new PredictError(await describeFailure(response), response.status);
  }

  let body: unknown;
  try {
    body = await response.json();
  } catch {
    throw new PredictError(unexpectedAnswer(), response.status);
  }
  const prediction = parsePrediction(body);
  if (prediction === null) {
    throw new PredictError(unexpectedAnswer(), response.status);
  }
  return prediction;
}

function unreachable(status?: number): string {
  const code = status === undefined ? "" : ` (HTTP ${status})`;
  return `The model API is not reachable right now${code}. Try again in a moment.`;
}

function unexpectedAnswer(): string {
  return "The model API sent an answer this page does not understand. Try again, or check the API logs.";
}

// 502/503/504 come from nginx (API down or slow) or from the API itself while the model loads:
// either way the user can only wait, so they all read the same.
const UNAVAILABLE = new Set([502, 503, 504]);

async function describeFailure(response: Response): Promise<string> {
  const { status } = response;
  if (UNAVAILABLE.has(status)) {
    return unreachable(status);
  }
  const detail = describeDetail(await readDetail(response));
  if (status === 422) {
    return detail === null
      ? "The model API rejected these measurements (HTTP 422)."
      : `The model API rejected these measurements: ${detail}`;
  }
  const base = `The model API failed to answer (HTTP ${status})`;
  return detail === null ? `${base}.` : `${base}: ${detail}`;
}

async function readDetail(response: Response): Promise<unknown> {
  try {
    const body: unknown = await response.json();
    return isObject(body) ? body.detail : undefined;
  } catch {
    return undefined; // an HTML error page, an empty body, ...
  }
}

const LABELS: Record<string, string> = Object.fromEntries(FIELDS.map((f) => [f.name, f.label.toLowerCase()]));

/**
 * FastAPI's `detail` is either a string or a list of `{loc, msg, type}`; renders either as
 * one sentence ending in a period, or null when there is nothing readable in it.
 */
export function describeDetail(detail: unknown): string | null {
  if (typeof detail === "string") {
    return sentence(detail);
  }
  if (!Array.isArray(detail)) {
    return null;
  }
  const parts = detail.flatMap((item) => {
    if (!isObject(item) || typeof item.msg !== "string" || item.msg.trim() === "") {
      return [];
    }
    const field = fieldOf(item.loc);
    const msg = item.msg.trim().replace(/\.$/, "");
    return [field === null ? msg : `${field}: ${lowerFirst(msg)}`];
  });
  return parts.length === 0 ? null : sentence(parts.join("; "));
}

/** The last named step of a `loc` such as `["body", "items", 0, "petal_width"]`. */
function fieldOf(loc: unknown): string | null {
  if (!Array.isArray(loc)) {
    return null;
  }
  const names = loc.filter((p): p is string => typeof p === "string" && p !== "body");
  const last = names.at(-1);
  if (last === undefined) {
    return null;
  }
  return LABELS[last] ?? last.replace(/_/g, " ");
}

function sentence(text: string): string | null {
  const trimmed = text.trim();
  if (trimmed === "") {
    return null;
  }
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function lowerFirst(text: string): string {
  // Keep acronyms ("JSON decode error") as they are.
  return /^[A-Z][a-z]/.test(text) ? text[0].toLowerCase() + text.slice(1) : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads the first prediction, ignoring any field this page does not use. */
export function parsePrediction(body: unknown): Prediction | null {
  if (!isObject(body) || !Array.isArray(body.predictions) || body.predictions.length === 0) {
    return null;
  }
  const first: unknown = body.predictions[0];
  if (!isObject(first) || typeof first.species !== "string" || !isObject(first.probabilities)) {
    return null;
  }
  const probabilities: Record<string, number> = {};
  for (const [species, p] of Object.entries(first.probabilities)) {
    if (typeof p !== "number" || !Number.isFinite(p)) {
      return null;
    }
    probabilities[species] = p;
  }
  return { species: first.species, probabilities };
}
