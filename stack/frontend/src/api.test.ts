import { describe, expect, it, vi } from "vitest";
import { describeDetail, predict, PredictError, PREDICT_URL } from "./api";

const FLOWER = { sepal_length: 5.1, sepal_width: 3.5, petal_length: 1.4, petal_width: 0.2 };

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

async function failure(response: Response | Error): Promise<PredictError> {
  const fetchImpl = vi.fn(() => (response instanceof Error ? Promise.reject(response) : Promise.resolve(response)));
  const err = await predict(FLOWER, fetchImpl).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(PredictError);
  return err as PredictError;
}

describe("predict", () => {
  it("posts one item to the relative API path and reads the first prediction", async () => {
    const fetchImpl = vi.fn((_url: RequestInfo | URL, _init?: RequestInit) =>
      Promise.resolve(
        json(200, {
          predictions: [
            {
              class_index: 0,
              species: "setosa",
              probabilities: { setosa: 0.97, versicolor: 0.02, virginica: 0.01 },
              extra: "ignored",
            },
          ],
          model_version: "1.2.3",
        }),
      ),
    );

    const prediction = await predict(FLOWER, fetchImpl);

    expect(prediction).toEqual({
      species: "setosa",
      probabilities: { setosa: 0.97, versicolor: 0.02, virginica: 0.01 },
    });
    expect(fetchImpl).toHaveBeenCalledTimes(1);
    const [url, init] = fetchImpl.mock.calls[0];
    expect(url).toBe("/api/predict");
    expect(PREDICT_URL).toBe("/api/predict");
    expect(init?.method).toBe("POST");
    expect(init?.headers).toMatchObject({ "Content-Type": "application/json" });
    expect(JSON.parse(String(init?.body))).toEqual({ items: [FLOWER] });
  });

  it.each([502, 503, 504])("says the API is not reachable on HTTP %i", async (status) => {
    const err = await failure(new Response("<html>Bad Gateway</html>", { status }));
    expect(err.message).toBe(`The model API is not reachable right now (HTTP ${status}). Try again in a moment.`);
    expect(err.status).toBe(status);
  });

  it("says the API is not reachable when the request fails outright", async () => {
    const err = await failure(new TypeError("Failed to fetch"));
    expect(err.message).toBe("The model API is not reachable right now. Try again in a moment.");
    expect(err.status).toBeUndefined();
  });

  it("renders a 422 with a string detail as a sentence", async () => {
    const err = await failure(json(422, { detail: "batch too large: at most 100 items" }));
    expect(err.message).toBe("The model API rejected these measurements: Batch too large: at most 100 items.");
  });

  it("renders a 422 with FastAPI's error list field by field", async () => {
    const err = await failure(
      json(422, {
        detail: [
          { loc: ["body", "items", 0, "petal_width"], msg: "Input should be greater than 0", type: "greater_than" },
          { loc: ["body", "items", 0, "sepal_length"], msg: "Field required", type: "missing" },
        ],
      }),
    );
    expect(err.message).toBe(
      "The model API rejected these measurements: Petal width: input should be greater than 0; " +
        "sepal length: field required.",
    );
    expect(err.message).not.toContain("{");
  });

  it("falls back to a plain sentence for a 422 it cannot read", async () => {
    const err = await failure(json(422, { detail: { nested: true } }));
    expect(err.message).toBe("The model API rejected these measurements (HTTP 422).");
  });

  it("reports other errors with their status and never the raw body", async () => {
    const err = await failure(new Response('{"oops": [1, 2]}', { status: 500 }));
    expect(err.message).toBe("The model API failed to answer (HTTP 500).");
    expect(err.status).toBe(500);
  });

  it("includes a string detail on other errors", async () => {
    const err = await failure(json(404, { detail: "Not Found" }));
    expect(err.message).toBe("The model API failed to answer (HTTP 404): Not Found.");
  });

  it.each([
    ["no predictions", { predictions: [] }],
    ["no species", { predictions: [{ probabilities: { setosa: 1 } }] }],
    ["non-numeric probability", { predictions: [{ species: "setosa", probabilities: { setosa: "high" } }] }],
    ["not an object", ["setosa"]],
  ])("rejects a 200 answer with %s", async (_case, body) => {
    const err = await failure(json(200, body));
    expect(err.message).toMatch(/^The model API sent an answer this page does not understand/);
  });

  it("rejects a 200 answer that is not JSON", async () => {
    const err = await failure(new Response("<html></html>", { status: 200 }));
    expect(err.message).toMatch(/^The model API sent an answer this page does not understand/);
  });
});

describe("describeDetail", () => {
  it("keeps a message that already ends a sentence", () => {
    expect(describeDetail("Model not loaded yet!")).toBe("Model not loaded yet!");
  });

  it("uses the last named part of loc and skips items without a message", () => {
    expect(
      describeDetail([
        { loc: ["body", "items"], msg: "List should have at most 100 items after validation, not 101." },
        { loc: ["body"], type: "missing" },
        "garbage",
      ]),
    ).toBe("Items: list should have at most 100 items after validation, not 101.");
  });

  it("gives the message alone when loc names no field", () => {
    expect(describeDetail([{ loc: ["body"], msg: "JSON decode error" }])).toBe("JSON decode error.");
  });

  it("returns null when there is nothing to show", () => {
    expect(describeDetail(undefined)).toBeNull();
    expect(describeDetail("  ")).toBeNull();
    expect(describeDetail([])).toBeNull();
  });
});
