package schema

import _ "embed"

// RequestJSONSchema, ControlJSONSchema and EventJSONSchema describe
// Request, ControlRequest and Event for publishers and consumers in other
// languages.
var (
	//go:embed request.schema.json
	RequestJSONSchema []byte
	//go:embed control.schema.json
	ControlJSONSchema []byte
	//go:embed event.schema.json
	EventJSONSchema []byte
)
