// htm bound to preact: components are written as tagged templates, no JSX step in the build.
import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
