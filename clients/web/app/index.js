// The start page: phones go straight to the responder view, desktops to the console.
const narrow = window.matchMedia("(max-width: 720px)").matches;
const params = new URLSearchParams(window.location.search);
if (!params.has("stay")) window.location.replace(narrow ? "/m" : "/console");
