// MathJax reads this before it loads. The equations are in the arithmatex spans that the
// Markdown build writes; MathJax typesets them as SVG, which needs no font files, so the
// site renders without a network. The menu is off: its extras would load scripts from a CDN.
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex", enableMenu: false},
  svg: {fontCache: "global"},
};
// With instant navigation a page arrives without a reload: typeset it again.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => { if (window.MathJax.typesetPromise) MathJax.typesetPromise(); });
}
