// The one place the UI library is imported from: Preact with hooks and htm's tagged templates
// (served by Muster from clients/web/node_modules, see server/web.py). Text interpolated into
// html`` is always set as text, never parsed as HTML: chat text cannot become markup.
export {
  html, render, h, Component, createContext, useState, useReducer, useEffect, useLayoutEffect, useRef,
  useMemo, useCallback, useContext,
} from "/vendor/preact-htm.js";
