"""The report's inline style and script (no external files, so one HTML file is the whole report)."""

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5em 2em 4em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em;
margin-top: 2em; } h3 { margin-top: 1.5em; }
nav a { margin-right: 1em; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.45em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th.wide, td.wide { min-width: 8em; overflow-wrap: anywhere; }
th { background: #f3f3f6; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { max-height: 28em; overflow-y: auto; overflow-x: hidden; }
p.lead { font-size: 1.05em; } p.result { background: #f4f1fa; padding: 0.5em 0.7em; border-radius: 4px; }
p.caution { color: #8a4b00; } p.note { font-size: 0.92em; }
dl.glossary { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em; font-size: 0.88em; }
dl.glossary dt { font-weight: 600; } dl.glossary dd { margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(16em, 1fr)); gap: 0.8em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.7em; font-size: 0.86em; }
.card h4 { margin: 0 0 0.2em; } .card-label { font-weight: 600; margin: 0 0 0.4em; }
.card dl { margin: 0; } .card dt { color: #666; } .card dd { margin: 0 0 0.3em; overflow-wrap: anywhere; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; }
#page-errors { background: #fde8e8; border: 1px solid #e0a0a0; padding: 0.6em; }
section.celltype { border-left: 4px solid #8a6fbf; padding-left: 1em; margin: 2em 0; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; } .pair > div { flex: 1 1 24em; min-width: 0; }
.tag { font-size: 0.8em; font-weight: 600; padding: 0.05em 0.4em; border-radius: 3px; color: #fff; }
.tag.measured { background: #2f6f4f; } .tag.attributed { background: #6b5a9a; }
"""

# Records script errors and figures that fail to load in a visible notice (never silently), and makes
# every table.sortable sortable by clicking its headers.
JS = """
(function () {
  var problems = [];
  function report(message) {
    problems.push(String(message));
    var box = document.getElementById("page-errors");
    if (box) { box.hidden = false; box.textContent = "Problems on this page: " + problems.join(" | "); }
  }
  window.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target !== window && target.tagName) {
      report("could not load a " + target.tagName.toLowerCase());
    } else {
      report(event.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (event) { report(event.reason); });
  var originalError = console.error;
  console.error = function () {
    report(Array.prototype.join.call(arguments, " "));
    return originalError.apply(console, arguments);
  };
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) { return numeric ? NaN : ""; }
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }
  function sortBy(table, header) {
    var index = Array.prototype.indexOf.call(header.parentNode.children, header);
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (numeric) {
        if (isNaN(x) && isNaN(y)) { return 0; }
        if (isNaN(x)) { return 1; }
        if (isNaN(y)) { return -1; }
        return ascending ? x - y : y - x;
      }
      return ascending ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(header.parentNode.children, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header) {
        header.title = "click to sort";
        header.addEventListener("click", function () { sortBy(table, header); });
      });
    });
  });
  window.addEventListener("load", function () {
    var images = document.querySelectorAll("img");
    var broken = Array.prototype.filter.call(images, function (img) { return !img.complete || img.naturalWidth === 0; });
    if (broken.length) { report(broken.length + " figure(s) did not render"); }
    document.body.setAttribute("data-figures-rendered", String(images.length - broken.length));
    document.body.setAttribute("data-problems", String(problems.length));
  });
})();
"""
