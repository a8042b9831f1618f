// schema.go — a small JSON-schema validator for the keywords that values.schema.json, the CRDs'
// openAPIV3Schema and tests/deploy/schemas/builtin.json use. In Kubernetes mode an object schema
// with "properties" and no "additionalProperties" rejects unknown fields (as kubectl's strict field
// validation does) unless it says x-kubernetes-preserve-unknown-fields.
package main

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

type validator struct {
	root     map[string]any // for "$ref": "#/definitions/..."
	k8s      bool
	errs     []string
	patterns map[string]*regexp.Regexp
}

func newValidator(root map[string]any, k8s bool) *validator {
	return &validator{root: root, k8s: k8s, patterns: map[string]*regexp.Regexp{}}
}

// Validate returns every violation of schema by doc, each as "path: problem".
func Validate(schema map[string]any, root map[string]any, doc any, k8s bool) []string {
	return ValidateAt(schema, root, doc, k8s, "")
}

// ValidateAt is Validate for a document found at path inside a larger one (for messages).
func ValidateAt(schema map[string]any, root map[string]any, doc any, k8s bool, path string) []string {
	v := newValidator(root, k8s)
	v.check(schema, doc, path)
	sort.Strings(v.errs)
	return v.errs
}

func (v *validator) fail(path, format string, a ...any) {
	if path == "" {
		path = "(root)"
	}
	v.errs = append(v.errs, path+": "+fmt.Sprintf(format, a...))
}

func typeOf(x any) string {
	switch t := x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if t == math.Trunc(t) {
			return "integer"
		}
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", x)
}

func typeMatches(want, got string) bool {
	return want == got || (want == "number" && got == "integer")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (v *validator) resolve(s map[string]any) (map[string]any, bool) {
	ref, ok := s["$ref"].(string)
	if !ok {
		return s, true
	}
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	var cur any = v.root
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur = m[part]
	}
	m, ok := cur.(map[string]any)
	return m, ok
}

func num(x any) (float64, bool) {
	f, ok := x.(float64)
	return f, ok
}

func (v *validator) check(s map[string]any, x any, path string) {
	s, ok := v.resolve(s)
	if !ok {
		v.fail(path, "unresolvable $ref")
		return
	}
	got := typeOf(x)
	if x == nil && s["nullable"] == true {
		return
	}
	intOrString := s["x-kubernetes-int-or-string"] == true
	if intOrString {
		if got != "integer" && got != "string" {
			v.fail(path, "expected an integer or a string, got %s", got)
			return
		}
	} else if t, ok := s["type"]; ok {
		var types []string
		switch tt := t.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, e := range tt {
				if es, ok := e.(string); ok {
					types = append(types, es)
				}
			}
		}
		match := false
		for _, w := range types {
			if typeMatches(w, got) {
				match = true
			}
		}
		if !match {
			v.fail(path, "expected %s, got %s (%s)", strings.Join(types, " or "), got, short(x))
			return
		}
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, c := range e {
			if reflect.DeepEqual(c, x) {
				found = true
			}
		}
		if !found {
			v.fail(path, "%s is not one of %s", short(x), short(e))
		}
	}
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, x) {
		v.fail(path, "must be %s, got %s", short(c), short(x))
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		subs, ok := s[key].([]any)
		if !ok {
			continue
		}
		n := 0
		var firstErrs []string
		for _, sub := range subs {
			sm, _ := sub.(map[string]any)
			sv := newValidator(v.root, v.k8s)
			sv.patterns = v.patterns
			sv.check(sm, x, path)
			if len(sv.errs) == 0 {
				n++
			} else if firstErrs == nil {
				firstErrs = sv.errs
			}
			if key == "allOf" {
				v.errs = append(v.errs, sv.errs...)
			}
		}
		if key == "anyOf" && n == 0 {
			v.fail(path, "matches none of anyOf (first: %s)", strings.Join(firstErrs, "; "))
		}
		if key == "oneOf" && n != 1 {
			v.fail(path, "matches %d of oneOf, expected exactly 1", n)
		}
	}
	if nt, ok := s["not"].(map[string]any); ok {
		sv := newValidator(v.root, v.k8s)
		sv.check(nt, x, path)
		if len(sv.errs) == 0 {
			v.fail(path, "must not match %s", short(nt))
		}
	}
	switch xx := x.(type) {
	case string:
		if p, ok := s["pattern"].(string); ok {
			re, seen := v.patterns[p]
			if !seen {
				re, _ = regexp.Compile(p) // RE2 lacks lookaround: such a pattern is skipped
				v.patterns[p] = re
			}
			if re != nil && !re.MatchString(xx) {
				v.fail(path, "%q does not match pattern %s", xx, p)
			}
		}
		if m, ok := num(s["minLength"]); ok && float64(len([]rune(xx))) < m {
			v.fail(path, "%q is shorter than %v", xx, m)
		}
		if m, ok := num(s["maxLength"]); ok && float64(len([]rune(xx))) > m {
			v.fail(path, "%q is longer than %v characters", xx, m)
		}
	case float64:
		if m, ok := num(s["minimum"]); ok && xx < m {
			v.fail(path, "%v is less than the minimum %v", xx, m)
		}
		if m, ok := num(s["maximum"]); ok && xx > m {
			v.fail(path, "%v is more than the maximum %v", xx, m)
		}
		if m, ok := num(s["exclusiveMinimum"]); ok && xx <= m {
			v.fail(path, "%v must be more than %v", xx, m)
		}
		if m, ok := num(s["multipleOf"]); ok && m > 0 && math.Mod(xx, m) != 0 {
			v.fail(path, "%v is not a multiple of %v", xx, m)
		}
	case []any:
		if m, ok := num(s["minItems"]); ok && float64(len(xx)) < m {
			v.fail(path, "has %d items, fewer than %v", len(xx), m)
		}
		if m, ok := num(s["maxItems"]); ok && float64(len(xx)) > m {
			v.fail(path, "has %d items, more than %v", len(xx), m)
		}
		if it, ok := s["items"].(map[string]any); ok {
			for i, e := range xx {
				v.check(it, e, fmt.Sprintf("%s[%d]", path, i))
			}
		}
		if s["uniqueItems"] == true {
			for i := range xx {
				for j := i + 1; j < len(xx); j++ {
					if reflect.DeepEqual(xx[i], xx[j]) {
						v.fail(path, "items %d and %d are equal", i, j)
					}
				}
			}
		}
	case map[string]any:
		v.checkObject(s, xx, path)
	}
}

func (v *validator) checkObject(s map[string]any, x map[string]any, path string) {
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if rs, ok := r.(string); ok {
				if _, has := x[rs]; !has {
					v.fail(path, "missing required field %q", rs)
				}
			}
		}
	}
	if m, ok := num(s["minProperties"]); ok && float64(len(x)) < m {
		v.fail(path, "has fewer than %v fields", m)
	}
	props, hasProps := s["properties"].(map[string]any)
	addl, hasAddl := s["additionalProperties"]
	preserve := s["x-kubernetes-preserve-unknown-fields"] == true
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := join(path, k)
		if ps, ok := props[k].(map[string]any); ok {
			v.check(ps, x[k], p)
			continue
		}
		switch a := addl.(type) {
		case bool:
			if !a {
				v.fail(p, "unknown field (not allowed here)")
			}
			continue
		case map[string]any:
			v.check(a, x[k], p)
			continue
		}
		if !hasAddl && hasProps && v.k8s && !preserve {
			v.fail(p, "unknown field")
		}
	}
}

func short(x any) string {
	s := fmt.Sprintf("%v", x)
	if str, ok := x.(string); ok {
		s = fmt.Sprintf("%q", str)
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
