package sources

import _ "embed"

// schemaJSON is the JSON Schema (draft 2020-12) of the fleet file, for editors: it
// follows the parser field for field (TestSchemaAgreesWithParser keeps the two in step),
// with the same bounds, enums and patterns where JSON Schema can say them.
//
//go:embed schema.json
var schemaJSON []byte

// Schema returns the fleet file's JSON Schema (draft 2020-12), as `drover schema`
// prints it. The parser stays the authority: the schema cannot express cross-field
// rules (unique names, timeout <= interval, …) or the upper bounds of durations.
func Schema() []byte {
	return append([]byte(nil), schemaJSON...)
}
