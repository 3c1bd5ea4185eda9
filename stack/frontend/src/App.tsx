import { useState, type FormEvent } from "react";
import { predict, PredictError, type Prediction } from "./api";
import { checkDraft, DEFAULT_DRAFT, FIELDS, MAX_CM, type Draft, type FieldName } from "./measurements";

type Outcome =
  | { kind: "idle" }
  | { kind: "loading" }
  | { kind: "done"; prediction: Prediction }
  | { kind: "failed"; message: string };

export function App() {
  const [draft, setDraft] = useState<Draft>(DEFAULT_DRAFT);
  const [outcome, setOutcome] = useState<Outcome>({ kind: "idle" });
  const { errors, measurements } = checkDraft(draft);
  const loading = outcome.kind === "loading";

  function update(name: FieldName, value: string) {
    setDraft((current) => ({ ...current, [name]: value }));
  }

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    // Enter in a field submits even when the button is disabled in some browsers.
    if (measurements === null || loading) {
      return;
    }
    setOutcome({ kind: "loading" });
    try {
      setOutcome({ kind: "done", prediction: await predict(measurements) });
    } catch (err) {
      const message = err instanceof PredictError ? err.message : "Something went wrong. Try again.";
      setOutcome({ kind: "failed", message });
    }
  }

  return (
    <main className="page">
      <header>
        <h1>Iris classifier</h1>
        <p className="lead">
          Enter the four measurements of an iris flower in centimetres (greater than 0, at most {MAX_CM}) to
          predict its species.
        </p>
      </header>

      <form className="card" onSubmit={submit} noValidate aria-busy={loading} aria-label="Measurements">
        <div className="fields">
          {FIELDS.map(({ name, label }) => {
            const id = `field-${name}`;
            const error = errors[name];
            return (
              <div className="field" key={name}>
                <label htmlFor={id}>{label} (cm)</label>
                <input
                  id={id}
                  name={name}
                  type="text"
                  inputMode="decimal"
                  autoComplete="off"
                  value={draft[name]}
                  onChange={(e) => update(name, e.target.value)}
                  aria-invalid={error !== undefined}
                  aria-describedby={error === undefined ? undefined : `${id}-error`}
                />
                {error !== undefined && (
                  <p className="field-error" id={`${id}-error`}>
                    {error}
                  </p>
                )}
              </div>
            );
          })}
        </div>
        <button type="submit" disabled={measurements === null || loading}>
          {loading ? "Predicting…" : "Predict"}
        </button>
      </form>

      <section className="card result" aria-live="polite" aria-label="Result">
        <Result outcome={outcome} />
      </section>

      <footer>
        <a href="/api/docs">API documentation</a>
      </footer>
    </main>
  );
}

function Result({ outcome }: { outcome: Outcome }) {
  switch (outcome.kind) {
    case "idle":
      return <p className="muted">The prediction will appear here.</p>;
    case "loading":
      return <p className="muted">Asking the model…</p>;
    case "failed":
      return (
        <p className="error" role="alert">
          {outcome.message}
        </p>
      );
    case "done":
      return <PredictionView prediction={outcome.prediction} />;
  }
}

const percent = new Intl.NumberFormat("en", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });

function PredictionView({ prediction }: { prediction: Prediction }) {
  const rows = Object.entries(prediction.probabilities);
  return (
    <>
      <h2>
        Predicted species: <span className="species">{prediction.species}</span>
      </h2>
      <ul className="bars" aria-label="Probabilities">
        {rows.map(([species, p]) => {
          const text = percent.format(p);
          const width = `${Math.min(Math.max(p, 0), 1) * 100}%`;
          return (
            <li key={species} className={species === prediction.species ? "bar winner" : "bar"}>
              <span className="bar-label">{species}</span>
              {/* The bar only repeats the number next to it, so screen readers skip it. */}
              <span className="bar-track" aria-hidden="true">
                <span className="bar-fill" style={{ width }} />
              </span>
              <span className="bar-value">{text}</span>
            </li>
          );
        })}
      </ul>
    </>
  );
}
