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
