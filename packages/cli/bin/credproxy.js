#!/usr/bin/env node
// Thin launcher for the built command (`npm run build`): the bundle in dist/bundle/
// (a few files to read, see scripts/bundle.mjs), or the plain tsc output without it.
import { existsSync } from 'node:fs'
import module from 'node:module'

// Node 22.1+ keeps compiled code between runs; older versions lack the function.
module.enableCompileCache?.()
// The stack traces CREDPROXY_DEBUG prints name src/*.ts lines (maps are read only then: they cost start-up time).
if (process.env.CREDPROXY_DEBUG !== undefined) process.setSourceMapsEnabled(true)
const bundled = new URL('../dist/bundle/credproxy.js', import.meta.url)
await import(existsSync(bundled) ? bundled.href : '../dist/bin.js')
