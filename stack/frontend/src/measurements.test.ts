import { describe, expect, it } from "vitest";
import { checkDraft, checkMeasurement, DEFAULT_DRAFT } from "./measurements";

describe("checkMeasurement", () => {
  it.each([
    ["5.1", 5.1],
    [" 3.5 ", 3.5],
    ["50", 50],
    ["0.01", 0.01],
    [".5", 0.5],
    ["7.", 7],
    ["+2", 2],
  ])("accepts %j", (raw, value) => {
    expect(checkMeasurement(raw)).toEqual({ ok: true, value });
  });

  it.each([
    ["", "Enter a value in cm."],
    ["   ", "Enter a value in cm."],
    ["abc", "Enter a number such as 5.1 (use a dot for decimals)."],
    ["5,1", "Enter a number such as 5.1 (use a dot for decimals)."],
    ["NaN", "Enter a number such as 5.1 (use a dot for decimals)."],
    ["Infinity", "Enter a number such as 5.1 (use a dot for decimals)."],
    ["0x10", "Enter a number such as 5.1 (use a dot for decimals)."],
    ["1e1", "Enter a number such as 5.1 (use a dot for decimals)."],
    ["9".repeat(400), "Enter a number such as 5.1."],
    ["0", "Must be greater than 0 cm."],
    ["0.0", "Must be greater than 0 cm."],
    ["-1", "Must be greater than 0 cm."],
    ["50.0001", "Must be at most 50 cm."],
    ["120", "Must be at most 50 cm."],
  ])("rejects %j", (raw, message) => {
    expect(checkMeasurement(raw)).toEqual({ ok: false, message });
  });
});

describe("checkDraft", () => {
  it("gives measurements when every field is valid", () => {
    expect(checkDraft(DEFAULT_DRAFT)).toEqual({
      errors: {},
      measurements: { sepal_length: 5.1, sepal_width: 3.5, petal_length: 1.4, petal_width: 0.2 },
    });
  });

  it("names each invalid field and gives no measurements", () => {
    const result = checkDraft({ ...DEFAULT_DRAFT, sepal_width: "", petal_width: "99" });
    expect(result.measurements).toBeNull();
    expect(result.errors).toEqual({
      sepal_width: "Enter a value in cm.",
      petal_width: "Must be at most 50 cm.",
    });
  });
});
