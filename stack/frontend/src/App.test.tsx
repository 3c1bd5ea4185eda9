import { fireEvent, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { App } from "./App";

const SETOSA = {
  predictions: [
    { class_index: 0, species: "setosa", probabilities: { setosa: 0.97, versicolor: 0.02, virginica: 0.01 } },
  ],
};

function stubFetch(...responses: Array<() => Promise<Response>>) {
  const fetchMock = vi.fn((_url: RequestInfo | URL, _init?: RequestInit) => {
    const next = responses.shift();
    if (next === undefined) {
      throw new Error("unexpected extra fetch");
    }
    return next();
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}

const ok = (body: unknown) => () =>
  Promise.resolve(new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } }));

describe("App", () => {
  it("labels every input and links to the API docs", () => {
    render(<App />);
    for (const label of ["Sepal length (cm)", "Sepal width (cm)", "Petal length (cm)", "Petal width (cm)"]) {
      expect(screen.getByLabelText(label)).toBeInstanceOf(HTMLInputElement);
    }
    expect(screen.getByRole("link", { name: "API documentation" })).toHaveAttribute("href", "/api/docs");
    expect(screen.getByRole("button", { name: "Predict" })).toBeEnabled();
  });

  it("submits the measurements and shows the species with its probabilities as text", async () => {
    const user = userEvent.setup();
    let answer: (r: Response) => void = () => {};
    const fetchMock = stubFetch(() => new Promise<Response>((resolve) => (answer = resolve)));
    render(<App />);

    const petal = screen.getByLabelText("Petal length (cm)");
    await user.clear(petal);
    await user.type(petal, "1.5");
    await user.click(screen.getByRole("button", { name: "Predict" }));

    // While the request is in flight the button says so and cannot be pressed again.
    expect(screen.getByRole("button", { name: "Predicting…" })).toBeDisabled();
    answer(await ok(SETOSA)());

    expect(await screen.findByRole("heading", { name: "Predicted species: setosa" })).toBeInTheDocument();
    const bars = within(screen.getByRole("list", { name: "Probabilities" })).getAllByRole("listitem");
    expect(bars.map((li) => li.textContent)).toEqual(["setosa97.0%", "versicolor2.0%", "virginica1.0%"]);
    expect(screen.getByRole("button", { name: "Predict" })).toBeEnabled();

    expect(fetchMock).toHaveBeenCalledTimes(1);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("/api/predict");
    expect(JSON.parse(String(init?.body))).toEqual({
      items: [{ sepal_length: 5.1, sepal_width: 3.5, petal_length: 1.5, petal_width: 0.2 }],
    });
  });

  it("submits with Enter from a field, using the keyboard only", async () => {
    const user = userEvent.setup();
    const fetchMock = stubFetch(ok(SETOSA));
    render(<App />);

    await user.tab();
    expect(screen.getByLabelText("Sepal length (cm)")).toHaveFocus();
    await user.keyboard("{Enter}");

    expect(await screen.findByText("setosa", { selector: ".species" })).toBeInTheDocument();
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });

  it("shows a message under an invalid field, disables Predict and sends nothing", async () => {
    const user = userEvent.setup();
    const fetchMock = stubFetch();
    render(<App />);

    const width = screen.getByLabelText("Sepal width (cm)");
    await user.clear(width);
    await user.type(width, "0");

    expect(width).toHaveAttribute("aria-invalid", "true");
    expect(width).toHaveAccessibleDescription("Must be greater than 0 cm.");
    expect(screen.getByRole("button", { name: "Predict" })).toBeDisabled();

    await user.type(width, "{Enter}");
    // A submit that bypasses the disabled button (as some browsers allow) must be refused too.
    fireEvent.submit(screen.getByRole("form", { name: "Measurements" }));
    expect(fetchMock).not.toHaveBeenCalled();

    await user.type(width, ".4");
    expect(width).toHaveAttribute("aria-invalid", "false");
    expect(screen.queryByText("Must be greater than 0 cm.")).toBeNull();
    expect(screen.getByRole("button", { name: "Predict" })).toBeEnabled();
  });

  it("shows a readable message when the API is down", async () => {
    const user = userEvent.setup();
    stubFetch(() => Promise.resolve(new Response("<html>502 Bad Gateway</html>", { status: 502 })));
    render(<App />);

    await user.click(screen.getByRole("button", { name: "Predict" }));

    expect(await screen.findByRole("alert")).toHaveTextContent(
      "The model API is not reachable right now (HTTP 502). Try again in a moment.",
    );
  });
});
