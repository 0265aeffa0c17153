// The only public door of @credproxy/core: named re-exports.
export * from './protocol/errors.js'
export * from './protocol/names.js'
export * from './protocol/frame.js'
export * from './protocol/messages.js'
export * from './protocol/handshake.js'
export * from './auth/token.js'
export * from './auth/stores.js'
