/** The four flower measurements the model takes, in the API's field names and order. */
export const FIELDS = [
  { name: "sepal_length", label: "Sepal length" },
  { name: "sepal_width", label: "Sepal width" },
  { name: "petal_length", label: "Petal length" },
  { name: "petal_width", label: "Petal width" },
] as const;

export type FieldName = (typeof FIELDS)[number]["name"];

export type Measurements = Record<FieldName, number>;

/** What the user typed, field by field (kept as text so a half-typed value is never lost). */
export type Draft = Record<FieldName, string>;

/** A typical Iris setosa, so that Predict works straight away. */
export const DEFAULT_DRAFT: Draft = {
  sepal_length: "5.1",
  sepal_width: "3.5",
  petal_length: "1.4",
  petal_width: "0.2",
};

/** Same bounds as the API: strictly positive, and no flower is half a metre long. */
export const MAX_CM = 50;

export type Checked = { ok: true; value: number } | { ok: false; message: string };

// Plain decimal notation only: Number() alone would also accept "0x1A", "1e1" and "".
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

/** Checks one typed value; the message is shown under the field as is. */
export function checkMeasurement(raw: string): Checked {
  const text = raw.trim();
  if (text === "") {
    return { ok: false, message: "Enter a value in cm." };
  }
  if (!DECIMAL.test(text)) {
    return { ok: false, message: "Enter a number such as 5.1 (use a dot for decimals)." };
  }
  const value = Number(text);
  if (!Number.isFinite(value)) {
    return { ok: false, message: "Enter a number such as 5.1." };
  }
  if (value <= 0) {
    return { ok: false, message: "Must be greater than 0 cm." };
  }
  if (value > MAX_CM) {
    return { ok: false, message: `Must be at most ${MAX_CM} cm.` };
  }
  return { ok: true, value };
}

/** Checks every field; `measurements` is set only when all of them are valid. */
export function checkDraft(draft: Draft): {
  errors: Partial<Record<FieldName, string>>;
  measurements: Measurements | null;
} {
  const errors: Partial<Record<FieldName, string>> = {};
  const values: Partial<Measurements> = {};
  for (const { name } of FIELDS) {
    const checked = checkMeasurement(draft[name]);
    if (checked.ok) {
      values[name] = checked.value;
    } else {
      errors[name] = checked.message;
    }
  }
  const valid = Object.keys(errors).length === 0;
  return { errors, measurements: valid ? (values as Measurements) : null };
}
