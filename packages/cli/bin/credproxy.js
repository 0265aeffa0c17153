#!/usr/bin/env node
// Thin launcher for the built command (`npm run build`): the bundle in dist/bundle/
// (a few files to read, see scripts/bundle.mjs), or the plain tsc output without it.
import { existsSync } from 'node:fs'
import module from 'node:module'

// Node 22.1+ keeps compiled code between runs; older versions lack the function.
module.enableCompileCache?.()
// The stack traces CREDPROXY_DEBUG prints name src/*.ts lines (maps are read only then: they cost start-up time).
if (process.env.CREDPROXY_DEBUG !== undefined) process.setSourceMapsEnabled(true)
// Inside a sandbox (CREDPROXY_SOCKET set, as isProxyMode checks) the commands an agent calls
// before its tool calls run from one file with no chunk to resolve (scripts/bundle.mjs).
const [command, sub] = process.argv.slice(2)
const proxied = (process.env.CREDPROXY_SOCKET ?? '') !== '' && (command === 'token' || command === 'exec' || (command === 'key' && sub === 'get'))
const bundled = new URL(proxied ? '../dist/bundle/credproxy-sandbox.js' : '../dist/bundle/credproxy.js', import.meta.url)
await import(existsSync(bundled) ? bundled.href : '../dist/bin.js')
