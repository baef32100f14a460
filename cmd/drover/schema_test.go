package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/drover-dev/drover/sources"
)

func TestSchemaCommand(t *testing.T) {
	code, stdout, stderr := runCLI(t, "schema")
	if code != exitOK {
		t.Fatalf("drover schema: exit %d, want 0\n%s", code, stderr)
	}
	if !bytes.Equal([]byte(stdout), sources.Schema()) {
		t.Errorf("drover schema printed something else than sources.Schema()")
	}
	var doc struct {
		Schema string `json:"$schema"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("output is not a draft 2020-12 schema: %v %q", err, doc.Schema)
	}
	if code, _, _ := runCLI(t, "schema", "extra"); code != exitUsage {
		t.Errorf("drover schema extra: exit %d, want %d", code, exitUsage)
	}
}
