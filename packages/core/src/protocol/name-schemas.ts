// The name rules of names.ts as zod schemas, for the edges that parse with zod (server, storage).
import * as z from 'zod'
import { BUCKET_NAME_PATTERN, KEY_NAME_PATTERN, PROVIDER_NAME_PATTERN } from './names.js'

export const ProviderName = z.string().regex(PROVIDER_NAME_PATTERN)
export const BucketName = z.string().regex(BUCKET_NAME_PATTERN)
export const KeyName = z.string().regex(KEY_NAME_PATTERN)
