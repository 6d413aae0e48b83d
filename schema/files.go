package schema

import _ "embed"

// RequestJSONSchema and EventJSONSchema describe Request and Event for
// publishers and consumers in other languages.
var (
	//go:embed request.schema.json
	RequestJSONSchema []byte
	//go:embed event.schema.json
	EventJSONSchema []byte
)
