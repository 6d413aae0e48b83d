// Package schema is winch's wire contract: the request a client publishes, the
// events a run emits, the job state kept in the state bucket, and the command
// specifications that validate parameters. It is a leaf package: it imports
// nothing of winch's, so any service can depend on it alone.
//
// The JSON Schema files embedded here (request.schema.json, event.schema.json)
// describe the same documents for publishers written in other languages.
package schema

// Version is the request schema version this build writes and understands.
const Version = 1
