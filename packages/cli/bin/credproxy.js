#!/usr/bin/env node
// Thin launcher: the compiled entry point lives in dist/ (built by `npm install`).
import '../dist/bin.js'
