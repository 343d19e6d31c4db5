// Keyboard shortcuts on the review queue: a button with data-key="y" is pressed by the key Y.
// Nothing is fetched from anywhere: this file and review.css are all the page loads.
"use strict";
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) {
    return;
  }
  var target = event.target;
  var tag = target && target.tagName ? target.tagName.toLowerCase() : "";
  if (tag === "textarea" || tag === "select" || (tag === "input" && target.type !== "radio" && target.type !== "checkbox")) {
    return; // typing, not a shortcut
  }
  var button = document.querySelector('button[data-key="' + event.key.toLowerCase() + '"]');
  if (button && !button.disabled) {
    event.preventDefault();
    button.click();
  }
});
