// The console's one script of its own: htmx sends the CSRF token with every request it
// makes (the token is in the page's <meta name="csrf-token">), and a form whose button
// asks for it is disabled while it is sent, so a double click starts nothing twice.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
});
document.addEventListener("submit", function (event) {
  var button = event.target.querySelector("button[data-once]");
  if (button) { setTimeout(function () { button.disabled = true; }, 0); }
});
