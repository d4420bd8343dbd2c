// The history's filter form: leave empty fields out of the URL, so a bookmarked or sent link
// names only the filters in force (the page works the same without this script).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("[data-testid=history-filters]");
  if (!form) return;
  form.addEventListener("submit", () => {
    for (const field of form.querySelectorAll("input, select")) {
      if (field.name && !field.value && field.type !== "checkbox") field.disabled = true;
      if (field.name === "sort" && field.value === "-date") field.disabled = true;
    }
  });
});

// "Compare selected": enabled for 2-4 ticked analyses (the server refuses other counts too).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("#compare-selected-form");
  if (!form) return;
  const button = form.querySelector("[data-compare-submit]");
  const count = form.querySelector("[data-compare-count]");
  const boxes = () => document.querySelectorAll('input[form="compare-selected-form"][name="a"]');
  const update = () => {
    const ticked = Array.from(boxes()).filter((box) => box.checked).length;
    button.disabled = ticked < 2 || ticked > 4;
    count.textContent = ticked === 0 ? "Tick 2–4 analyses to compare them side by side."
      : ticked > 4 ? `${ticked} ticked: at most 4 can be compared.` : `${ticked} ticked.`;
  };
  for (const box of boxes()) box.addEventListener("change", update);
  update();
});
