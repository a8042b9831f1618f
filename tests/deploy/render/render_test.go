// render_test.go — unit tests of the YAML subset parser/emitter, the template functions' Helm
// semantics and the schema validator (go test, run by tests/deploy/check.py).
package main

import (
	"reflect"
	"strings"
	"testing"
	"text/template"
)

func mustParse(t *testing.T, text string) any {
	t.Helper()
	v, err := ParseYAML("t.yaml", text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	return v
}

func TestParseStructures(t *testing.T) {
	got := mustParse(t, `# comment
a: 1
b: "two # not a comment"
c: 'it''s'
d:
- x
- k: v
  k2: [1, "2", {n: null}]
e:
  f: |
    line1
     indented
  g: >-
    folded
    text

    para
  h: plain
    continued
i: {}
j: []
k: true # trailing
l: http://host:80/x
`)
	want := map[string]any{
		"a": 1.0, "b": "two # not a comment", "c": "it's",
		"d": []any{"x", map[string]any{"k": "v", "k2": []any{1.0, "2", map[string]any{"n": nil}}}},
		"e": map[string]any{"f": "line1\n indented\n", "g": "folded text\npara", "h": "plain continued"},
		"i": map[string]any{}, "j": []any{}, "k": true, "l": "http://host:80/x",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}

func TestParseDocsAndMultilineQuoted(t *testing.T) {
	docs, err := ParseYAMLDocs("t", "---\na: 'x\n  y'\n---\n# only a comment\n---\nb: \"p\\\n  q\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"a": "x y"}, map[string]any{"b": "pq"}}
	if !reflect.DeepEqual(docs, want) {
		t.Fatalf("got %#v", docs)
	}
}

func TestParseRejects(t *testing.T) {
	bad := map[string]string{
		"a:\n  b: 1\n   c: 2\n":   "bad indentation",
		"a: 1\na: 2\n":            "duplicate key",
		"a: yes\n":                "quote it",
		"a: 0755\n":               "quote it",
		"a: &x 1\n":               "anchors",
		"a:\n\tb: 1\n":            "tab",
		"a: [1, 2\n":              "expected",
		"a: \"open\n":             "unterminated",
		"a: b: c\n":               "mapping values are not allowed",
		"- a\nb: 1\n":             "unexpected content",
		"a:\n  - x\n  y: 1\n":     "bad indentation",
		"a: 1\n  b: 2\n":          "bad indentation",
		"a: \"x\" trailing\n":     "after quoted",
		"k: {a: 1} x\n":           "after flow",
		"k: |\n  x\n y: 1\n":      "bad indentation",
		"k: \"\\q\"\n":            "unknown escape",
		"list:\n- a\n - b\n":      "bad indentation",
		"a: 1\nb:\n  - c\n - d\n": "",
	}
	for text, msg := range bad {
		_, err := ParseYAML("t", text)
		if err == nil {
			t.Errorf("%q parsed, expected an error containing %q", text, msg)
			continue
		}
		if !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %q does not contain %q", text, err, msg)
		}
	}
}

func TestToYAMLRoundTrip(t *testing.T) {
	v := map[string]any{
		"z": []any{map[string]any{"b": 1.0, "a": "x"}, "plain", "8000", "yes", "", "a: b", "multi\nline", true},
		"a": map[string]any{"empty": map[string]any{}, "list": []any{}, "n": nil, "f": 0.5},
	}
	text := ToYAML(v)
	wantPrefix := "a:\n  empty: {}\n  f: 0.5\n  list: []\n  \"n\": null\nz:\n- a: x\n  b: 1\n- plain\n- \"8000\"\n- \"yes\"\n"
	if !strings.HasPrefix(text, wantPrefix) {
		t.Fatalf("toYaml:\n%s", text)
	}
	back := mustParse(t, text)
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("round trip:\n%#v\n%#v", back, v)
	}
}

func execTpl(t *testing.T, src string, data any) (string, error) {
	t.Helper()
	var root *template.Template
	root = template.New("x").Funcs(templateFuncs(&root)).Option("missingkey=zero")
	if _, err := root.Parse(src); err != nil {
		return "", err
	}
	var b strings.Builder
	err := root.Execute(&b, data)
	return b.String(), err
}

func TestHelmFunctions(t *testing.T) {
	data := map[string]any{"n": 8.0, "s": "", "m": map[string]any{"k": "v"}}
	cases := map[string]string{
		`{{ .n | quote }}`: `"8"`,
		`{{ default "d" .s }}|{{ default "d" .m.k }}`:                   `d|v`,
		`{{ mul .n 2 }} {{ div 9 2 }} {{ mod 9 2 }}`:                    `16 4 1`,
		`{{ "a\nb" | nindent 2 }}`:                                      "\n  a\n  b",
		`{{ "abcdef" | trunc 3 }}{{ "x-" | trimSuffix "-" }}`:           "abcx",
		`{{ toYaml .m }}`:                                               "k: v",
		`{{ sha256sum "x" | trunc 8 }}`:                                 "2d711642",
		`{{ define "t" }}[{{ . }}]{{ end }}{{ include "t" 3 | upper }}`: "[3]",
		`{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ toYaml $d }}`: "a: 1\nb: 2",
		`{{ eq (int .n) 8 }} {{ empty .s }} {{ hasKey .m "k" }}`:        "true true true",
	}
	for src, want := range cases {
		got, err := execTpl(t, src, data)
		if err != nil || got != want {
			t.Errorf("%s: got %q (%v), want %q", src, got, err, want)
		}
	}
	if _, err := execTpl(t, `{{ required "need x" .s }}`, data); err == nil || !strings.Contains(err.Error(), "need x") {
		t.Errorf("required: %v", err)
	}
	if _, err := execTpl(t, `{{ fail "boom" }}`, data); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("fail: %v", err)
	}
	// Helm keeps numbers as float64: comparing one with an int literal is an error there too.
	if _, err := execTpl(t, `{{ eq .n 8 }}`, data); err == nil {
		t.Errorf("eq float64 int: expected an error, as in Helm")
	}
}

func TestMergeValues(t *testing.T) {
	a := map[string]any{"x": map[string]any{"a": 1.0, "b": 2.0}, "y": 1.0, "z": "keep"}
	b := map[string]any{"x": map[string]any{"b": 3.0}, "y": nil}
	got := mergeValues(a, b)
	want := map[string]any{"x": map[string]any{"a": 1.0, "b": 3.0}, "z": "keep"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
}

func TestValidator(t *testing.T) {
	schema := mustParse(t, `
type: object
required: [name]
properties:
  name: {type: string, minLength: 1}
  port: {type: integer, minimum: 1, maximum: 65535}
  mode: {type: string, enum: [a, b]}
  q: {anyOf: [{type: integer}, {type: string}], x-kubernetes-int-or-string: true, pattern: "^[0-9]+Gi$"}
  list: {type: array, items: {type: object, required: [k], properties: {k: {type: string}}}}
  free: {type: object, x-kubernetes-preserve-unknown-fields: true, properties: {a: {type: string}}}
`).(map[string]any)
	doc := mustParse(t, `
port: 70000.5
mode: c
q: 5G
list: [{j: 1}]
free: {b: 1}
extra: 1
`)
	errs := Validate(schema, schema, doc, true)
	want := []string{
		`(root): missing required field "name"`,
		`extra: unknown field`,
		`list[0].j: unknown field`,
		`list[0]: missing required field "k"`,
		`mode: "c" is not one of [a b]`,
		`port: expected integer, got number (70000.5)`,
		`q: "5G" does not match pattern ^[0-9]+Gi$`,
	}
	if !reflect.DeepEqual(errs, want) {
		t.Fatalf("got:\n%s", strings.Join(errs, "\n"))
	}
	if errs := Validate(schema, schema, doc, false); len(errs) != 5 {
		t.Fatalf("JSON-schema mode must allow unknown fields: %v", errs)
	}
}
