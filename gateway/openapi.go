package gateway

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's document, written by hand and checked against the
// routes by TestOpenAPIDocumentsEveryRoute.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
