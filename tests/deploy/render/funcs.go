// funcs.go — the Helm/sprig template functions the chart uses, with Helm's semantics (sprig's
// numeric casts, "empty" rules, toYaml without a trailing newline, include/required/fail).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/template"
)

func strval(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case []byte:
		return string(x)
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprintf("%v", v)
}

// toInt64 follows sprig (spf13/cast): numbers truncate, numeric strings parse, anything else is 0.
func toInt64(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int64:
		return x
	case int32:
		return int64(x)
	case float64:
		return int64(x)
	case float32:
		return int64(x)
	case bool:
		if x {
			return 1
		}
		return 0
	case string:
		if i, err := strconv.ParseInt(strings.TrimSpace(x), 0, 64); err == nil {
			return i
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return int64(f)
		}
	}
	return 0
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String, reflect.Array, reflect.Map, reflect.Slice:
		return r.Len() == 0
	case reflect.Bool:
		return !r.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return r.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return r.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return r.Float() == 0
	case reflect.Ptr, reflect.Interface:
		return r.IsNil()
	}
	return false
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// toJSON is sprig's toJson: compact JSON of any value.
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// normalize turns template-built values into the parser's types so that toYaml prints them.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = normalize(e)
		}
		return l
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	return v
}

// templateFuncs builds the function map; root is filled in once all templates are parsed.
func templateFuncs(root **template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			if err := (*root).ExecuteTemplate(&b, name, data); err != nil {
				return "", err
			}
			return b.String(), nil
		},
		"required": func(msg string, v any) (any, error) {
			if v == nil {
				return nil, errors.New(msg)
			}
			if s, ok := v.(string); ok && s == "" {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
		"default": func(d any, given ...any) any {
			if len(given) == 0 || isEmpty(given[0]) {
				return d
			}
			return given[0]
		},
		"empty": isEmpty,
		"quote": func(a ...any) string {
			out := make([]string, 0, len(a))
			for _, s := range a {
				if s != nil {
					out = append(out, fmt.Sprintf("%q", strval(s)))
				}
			}
			return strings.Join(out, " ")
		},
		"squote": func(a ...any) string {
			out := make([]string, 0, len(a))
			for _, s := range a {
				if s != nil {
					out = append(out, "'"+strval(s)+"'")
				}
			}
			return strings.Join(out, " ")
		},
		"toYaml":     func(v any) string { return ToYAML(normalize(v)) },
		"toJson":     toJSON,
		"indent":     indent,
		"nindent":    func(n int, s string) string { return "\n" + indent(n, s) },
		"trim":       strings.TrimSpace,
		"trimSuffix": func(suf, s string) string { return strings.TrimSuffix(s, suf) },
		"trimPrefix": func(pre, s string) string { return strings.TrimPrefix(s, pre) },
		"trunc": func(n int, s string) string {
			if n >= 0 && len(s) > n {
				return s[:n]
			}
			if n < 0 && len(s) > -n {
				return s[len(s)+n:]
			}
			return s
		},
		"lower":     strings.ToLower,
		"upper":     strings.ToUpper,
		"replace":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix": func(pre, s string) bool { return strings.HasPrefix(s, pre) },
		"hasSuffix": func(suf, s string) bool { return strings.HasSuffix(s, suf) },
		"sha256sum": func(s string) string {
			h := sha256.Sum256([]byte(s))
			return hex.EncodeToString(h[:])
		},
		"add": func(a ...any) int64 {
			var s int64
			for _, x := range a {
				s += toInt64(x)
			}
			return s
		},
		"add1": func(a any) int64 { return toInt64(a) + 1 },
		"sub":  func(a, b any) int64 { return toInt64(a) - toInt64(b) },
		"mul": func(a any, v ...any) int64 {
			p := toInt64(a)
			for _, x := range v {
				p *= toInt64(x)
			}
			return p
		},
		"div": func(a, b any) (int64, error) {
			if toInt64(b) == 0 {
				return 0, errors.New("div: division by zero")
			}
			return toInt64(a) / toInt64(b), nil
		},
		"mod": func(a, b any) (int64, error) {
			if toInt64(b) == 0 {
				return 0, errors.New("mod: division by zero")
			}
			return toInt64(a) % toInt64(b), nil
		},
		"int":      func(v any) int { return int(toInt64(v)) },
		"int64":    toInt64,
		"toString": strval,
		"hasKey": func(m map[string]any, k string) bool {
			_, ok := m[k]
			return ok
		},
		"list": func(a ...any) []any { return a },
		"dict": func(a ...any) (map[string]any, error) {
			if len(a)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := map[string]any{}
			for i := 0; i < len(a); i += 2 {
				m[strval(a[i])] = a[i+1]
			}
			return m, nil
		},
		"set": func(m map[string]any, k string, v any) map[string]any {
			m[k] = v
			return m
		},
		"join": func(sep string, v any) string {
			r := reflect.ValueOf(v)
			if r.Kind() != reflect.Slice {
				return strval(v)
			}
			parts := make([]string, r.Len())
			for i := range parts {
				parts[i] = strval(r.Index(i).Interface())
			}
			return strings.Join(parts, sep)
		},
		"ternary": func(a, b any, c bool) any {
			if c {
				return a
			}
			return b
		},
		"until": func(n any) []int {
			k := int(toInt64(n))
			if k < 0 {
				k = 0
			}
			out := make([]int, k)
			for i := range out {
				out[i] = i
			}
			return out
		},
		"kindIs": func(kind string, v any) bool {
			if v == nil {
				return kind == "invalid"
			}
			return reflect.ValueOf(v).Kind().String() == kind
		},
	}
}
