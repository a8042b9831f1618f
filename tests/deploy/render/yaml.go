// yaml.go — a strict parser and emitter for the YAML subset that Helm charts, values files and
// Kubernetes CRDs use: block mappings and sequences, plain/quoted/block scalars, simple flow
// collections, comments and '---' documents. Anything outside the subset (anchors, aliases, tags,
// tabs in indentation, YAML 1.1 booleans like "yes", leading-zero numbers) is an error, never a guess.
package main

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Numbers are float64, as Helm gets them (values go through JSON on their way into templates).
type yamlParser struct {
	file  string
	lines []string
	pos   int
}

func yamlErr(file string, line int, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s", file, line+1, fmt.Sprintf(format, a...))
}

// ParseYAMLDocs splits text on '---' lines and parses each document; empty documents are dropped.
func ParseYAMLDocs(file, text string) ([]any, error) {
	var docs []any
	var cur []string
	start := 0
	flush := func() error {
		p := &yamlParser{file: file, lines: cur}
		v, empty, err := p.parseDocument(start)
		if err != nil {
			return err
		}
		if !empty {
			docs = append(docs, v)
		}
		return nil
	}
	all := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for i, l := range all {
		if l == "---" || strings.HasPrefix(l, "--- ") || strings.HasPrefix(l, "---\t") {
			rest := strings.TrimSpace(l[3:])
			if rest != "" && !strings.HasPrefix(rest, "#") {
				return nil, yamlErr(file, i, "content after '---' is not supported")
			}
			if err := flush(); err != nil {
				return nil, err
			}
			cur = nil
			start = i + 1
			continue
		}
		if l == "..." {
			continue
		}
		cur = append(cur, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// ParseYAML parses exactly one document (an empty text gives an empty map).
func ParseYAML(file, text string) (any, error) {
	docs, err := ParseYAMLDocs(file, text)
	if err != nil {
		return nil, err
	}
	switch len(docs) {
	case 0:
		return map[string]any{}, nil
	case 1:
		return docs[0], nil
	}
	return nil, fmt.Errorf("%s: expected one YAML document, found %d", file, len(docs))
}

func (p *yamlParser) parseDocument(offset int) (any, bool, error) {
	for i, l := range p.lines {
		ind := indentOf(l)
		if ind < len(l) && l[ind] == '\t' && strings.TrimSpace(l) != "" {
			return nil, false, yamlErr(p.file, offset+i, "tab in indentation")
		}
	}
	// Line numbers in errors: shift by the document's first line.
	p.file = fmt.Sprintf("%s(doc@%d)", p.file, offset+1)
	p.skipBlank()
	if p.pos >= len(p.lines) {
		return nil, true, nil
	}
	v, err := p.parseNode(0)
	if err != nil {
		return nil, false, err
	}
	p.skipBlank()
	if p.pos < len(p.lines) {
		return nil, false, yamlErr(p.file, p.pos, "unexpected content (bad indentation?): %q", strings.TrimSpace(p.lines[p.pos]))
	}
	return v, false, nil
}

func indentOf(l string) int {
	n := 0
	for n < len(l) && l[n] == ' ' {
		n++
	}
	return n
}

func isBlank(l string) bool {
	t := strings.TrimSpace(l)
	return t == "" || strings.HasPrefix(t, "#")
}

func (p *yamlParser) skipBlank() {
	for p.pos < len(p.lines) && isBlank(p.lines[p.pos]) {
		p.pos++
	}
}

// stripComment removes a trailing " # comment" from plain text.
func stripComment(s string) string {
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "\t#"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(s, " \t")
}

func isSeqItem(t string) bool { return t == "-" || strings.HasPrefix(t, "- ") }

// splitKey finds "key: rest" in t; ok is false when t is not a mapping entry.
func splitKey(t string) (key, rest string, ok bool, err error) {
	if t == "" || t[0] == '[' || t[0] == '{' || t[0] == '|' || t[0] == '>' || isSeqItem(t) {
		return "", "", false, nil
	}
	if t[0] == '"' || t[0] == '\'' {
		s, n, e := parseQuoted(t)
		if e != nil {
			return "", "", false, e
		}
		after := t[n:]
		if after == ":" || strings.HasPrefix(after, ": ") {
			return s, strings.TrimLeft(after[1:], " "), true, nil
		}
		return "", "", false, nil
	}
	body := stripComment(t)
	if i := strings.Index(body, ": "); i >= 0 {
		return strings.TrimRight(body[:i], " "), strings.TrimLeft(t[i+2:], " "), true, nil
	}
	if strings.HasSuffix(body, ":") {
		return strings.TrimRight(body[:len(body)-1], " "), "", true, nil
	}
	return "", "", false, nil
}

// parseNode parses the block node starting at the next non-blank line; its lines are indented at
// least minIndent (a line indented less ends it, giving null).
func (p *yamlParser) parseNode(minIndent int) (any, error) {
	p.skipBlank()
	if p.pos >= len(p.lines) {
		return nil, nil
	}
	l := p.lines[p.pos]
	ind := indentOf(l)
	if ind < minIndent {
		return nil, nil
	}
	t := l[ind:]
	if isSeqItem(t) {
		return p.parseSeq(ind)
	}
	_, _, isMap, err := splitKey(t)
	if err != nil {
		return nil, yamlErr(p.file, p.pos, "%v", err)
	}
	if isMap {
		return p.parseMap(ind)
	}
	// A lone scalar: block, flow, quoted or (possibly multi-line) plain.
	line := p.pos
	p.pos++
	return p.parseValue(t, line, minIndent, ind)
}

// parseValue interprets the text after "key: " (or a lone scalar line); parent is the indentation
// of the owning key, content lines of multi-line values must be indented more than it.
func (p *yamlParser) parseValue(t string, line, minContent, parent int) (any, error) {
	switch {
	case t == "":
		return nil, nil
	case t[0] == '&' || t[0] == '*' || t[0] == '!':
		return nil, yamlErr(p.file, line, "anchors, aliases and tags are not supported: %q", t)
	case t[0] == '|' || t[0] == '>':
		return p.parseBlockScalar(t, line, minContent)
	case t[0] == '[' || t[0] == '{':
		f := &flowParser{s: t}
		v, err := f.value()
		if err == nil {
			f.skipSpace()
			if rest := stripComment(f.s[f.i:]); rest != "" {
				err = fmt.Errorf("unexpected %q after flow collection (multi-line flow is not supported)", rest)
			}
		}
		if err != nil {
			return nil, yamlErr(p.file, line, "%v", err)
		}
		return v, nil
	case t[0] == '"' || t[0] == '\'':
		s, n, err := parseQuoted(t)
		// A quoted scalar may go on over more-indented lines: fold them (line break -> space,
		// blank line -> newline, a trailing backslash in "..." joins without a space).
		for err != nil && p.pos < len(p.lines) && (strings.TrimSpace(p.lines[p.pos]) == "" ||
			indentOf(p.lines[p.pos]) > parent) {
			nt := strings.TrimSpace(p.lines[p.pos])
			p.pos++
			switch {
			case nt == "":
				t += "\n"
			case t[0] == '"' && strings.HasSuffix(t, "\\") && !strings.HasSuffix(t, "\\\\"):
				t = t[:len(t)-1] + nt
			case strings.HasSuffix(t, "\n"):
				t += nt
			default:
				t += " " + nt
			}
			if t[0] == '"' {
				t = strings.ReplaceAll(t, "\n", `\n`)
			}
			s, n, err = parseQuoted(t)
		}
		if err != nil {
			return nil, yamlErr(p.file, line, "%v", err)
		}
		if rest := stripComment(strings.TrimLeft(t[n:], " ")); rest != "" {
			return nil, yamlErr(p.file, line, "unexpected %q after quoted string", rest)
		}
		return s, nil
	}
	text := stripComment(t)
	if strings.Contains(text, ": ") {
		return nil, yamlErr(p.file, line, "mapping values are not allowed here: %q (quote the string)", text)
	}
	// Continuation lines of a multi-line plain scalar, folded with spaces.
	for p.pos < len(p.lines) {
		nl := p.lines[p.pos]
		if strings.TrimSpace(nl) == "" {
			// A blank line inside a plain scalar is a newline, if the scalar goes on.
			j := p.pos
			for j < len(p.lines) && strings.TrimSpace(p.lines[j]) == "" {
				j++
			}
			if j < len(p.lines) && indentOf(p.lines[j]) > parent && !isBlank(p.lines[j]) {
				text += strings.Repeat("\n", j-p.pos)
				p.pos = j
				continue
			}
			break
		}
		ni := indentOf(nl)
		if ni <= parent || isBlank(nl) {
			break
		}
		nt := stripComment(nl[ni:])
		if strings.Contains(nt, ": ") || strings.HasSuffix(nt, ":") || isSeqItem(nt) {
			return nil, yamlErr(p.file, p.pos, "bad indentation or mapping inside a plain scalar: %q", nt)
		}
		if strings.HasSuffix(text, "\n") {
			text += nt
		} else {
			text += " " + nt
		}
		p.pos++
	}
	v, err := resolvePlain(text)
	if err != nil {
		return nil, yamlErr(p.file, line, "%v", err)
	}
	return v, nil
}

func (p *yamlParser) parseMap(indent int) (any, error) {
	m := map[string]any{}
	for {
		p.skipBlank()
		if p.pos >= len(p.lines) {
			return m, nil
		}
		l := p.lines[p.pos]
		ind := indentOf(l)
		if ind < indent {
			return m, nil
		}
		if ind > indent {
			return nil, yamlErr(p.file, p.pos, "bad indentation: %q (expected %d spaces)", strings.TrimSpace(l), indent)
		}
		t := l[ind:]
		key, rest, ok, err := splitKey(t)
		if err != nil {
			return nil, yamlErr(p.file, p.pos, "%v", err)
		}
		if !ok {
			return nil, yamlErr(p.file, p.pos, "expected 'key: value' in a mapping, got %q", t)
		}
		if key == "" || key[0] == '&' || key[0] == '*' || key[0] == '!' || key == "<<" || key == "?" {
			return nil, yamlErr(p.file, p.pos, "unsupported key %q", key)
		}
		if _, dup := m[key]; dup {
			return nil, yamlErr(p.file, p.pos, "duplicate key %q", key)
		}
		line := p.pos
		p.pos++
		if stripComment(rest) == "" {
			// Value on the following lines: a nested block, or a sequence at the key's own indentation.
			p.skipBlank()
			var v any
			if p.pos < len(p.lines) {
				ni := indentOf(p.lines[p.pos])
				nt := p.lines[p.pos][ni:]
				if ni > indent {
					v, err = p.parseNode(indent + 1)
				} else if ni == indent && isSeqItem(nt) {
					v, err = p.parseSeq(indent)
				}
				if err != nil {
					return nil, err
				}
			}
			m[key] = v
			continue
		}
		v, err := p.parseValue(rest, line, indent+1, indent)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
}

func (p *yamlParser) parseSeq(indent int) (any, error) {
	list := []any{}
	for {
		p.skipBlank()
		if p.pos >= len(p.lines) {
			return list, nil
		}
		l := p.lines[p.pos]
		ind := indentOf(l)
		t := l[ind:]
		if ind < indent || (ind == indent && !isSeqItem(t)) {
			return list, nil
		}
		if ind > indent {
			return nil, yamlErr(p.file, p.pos, "bad indentation in a sequence: %q", strings.TrimSpace(l))
		}
		content := strings.TrimLeft(t[1:], " ")
		if stripComment(content) == "" {
			p.pos++
			v, err := p.parseNode(indent + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
			continue
		}
		// "- key: v" etc.: re-read the item's content as if it started in its own column.
		col := len(l) - len(content)
		p.lines[p.pos] = strings.Repeat(" ", col) + content
		v, err := p.parseNode(indent + 1)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
}

func (p *yamlParser) parseBlockScalar(h string, line, minContent int) (any, error) {
	h = stripComment(h)
	style := h[0]
	chomp := byte('c')
	explicit := 0
	for _, c := range h[1:] {
		switch {
		case c == '-' || c == '+':
			chomp = byte(c)
		case c >= '1' && c <= '9':
			explicit = int(c - '0')
		default:
			return nil, yamlErr(p.file, line, "bad block scalar header %q", h)
		}
	}
	ci := -1
	if explicit > 0 {
		ci = minContent - 1 + explicit
	}
	var raw []string
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if strings.TrimSpace(l) == "" {
			raw = append(raw, "")
			p.pos++
			continue
		}
		ind := indentOf(l)
		if ci < 0 {
			if ind < minContent {
				break
			}
			ci = ind
		}
		if ind < ci {
			break
		}
		raw = append(raw, l[ci:])
		p.pos++
	}
	// Trailing blank lines: part of the scalar only for keep chomping; give the rest back.
	n := len(raw)
	for n > 0 && raw[n-1] == "" {
		n--
	}
	trailing := len(raw) - n
	body := raw[:n]
	var s string
	if style == '|' {
		s = strings.Join(body, "\n")
	} else {
		var b strings.Builder
		for i, l := range body {
			if i > 0 {
				prev := body[i-1]
				switch {
				case l == "":
					b.WriteString("\n")
				case prev == "":
					// the break before a blank line is folded away; the blank line gave "\n"
				case strings.HasPrefix(l, " ") || strings.HasPrefix(prev, " "):
					b.WriteString("\n")
				default:
					b.WriteString(" ")
				}
			}
			b.WriteString(l)
		}
		s = b.String()
	}
	switch chomp {
	case 'c':
		if n > 0 {
			s += "\n"
		}
	case '+':
		if n > 0 {
			s += "\n"
		}
		s += strings.Repeat("\n", trailing)
	}
	return s, nil
}

// parseQuoted reads a single- or double-quoted scalar at the start of t; n is the bytes consumed.
func parseQuoted(t string) (string, int, error) {
	q := t[0]
	var b strings.Builder
	for i := 1; i < len(t); i++ {
		c := t[i]
		if q == '\'' {
			if c == '\'' {
				if i+1 < len(t) && t[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				return b.String(), i + 1, nil
			}
			b.WriteByte(c)
			continue
		}
		switch c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 >= len(t) {
				return "", 0, fmt.Errorf("unterminated escape in %q", t)
			}
			i++
			switch e := t[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0':
				b.WriteByte(0)
			case '"', '\\', '/', ' ':
				b.WriteByte(e)
			case 'x', 'u', 'U':
				w := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if i+1+w > len(t) {
					return "", 0, fmt.Errorf("short \\%c escape in %q", e, t)
				}
				r, err := strconv.ParseUint(t[i+1:i+1+w], 16, 32)
				if err != nil {
					return "", 0, fmt.Errorf("bad \\%c escape in %q", e, t)
				}
				b.WriteRune(rune(r))
				i += w
			default:
				return "", 0, fmt.Errorf("unknown escape \\%c in %q", e, t)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated quoted string %q (multi-line quoted strings are not supported)", t)
}

var (
	reInt      = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)$`)
	reLeading0 = regexp.MustCompile(`^[-+]?0[0-9]+$`)
	reFloat    = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)
	reOtherNum = regexp.MustCompile(`^([-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|0[xXoObB][0-9a-fA-F_]+)$`)
)

// resolvePlain gives a plain scalar its type: null, bool, number or string.
func resolvePlain(s string) (any, error) {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil, nil
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE":
		return false, nil
	}
	switch strings.ToLower(s) {
	case "yes", "no", "on", "off", "y", "n":
		return nil, fmt.Errorf("%q is a boolean in YAML 1.1 but a string in YAML 1.2: quote it", s)
	}
	if reLeading0.MatchString(s) || reOtherNum.MatchString(s) {
		return nil, fmt.Errorf("%q is read differently by YAML 1.1 and 1.2 parsers: quote it", s)
	}
	if reInt.MatchString(s) || reFloat.MatchString(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %q", s)
		}
		return f, nil
	}
	if strings.ContainsAny(s[:1], "&*!%@`") {
		return nil, fmt.Errorf("plain scalar %q starts with a reserved indicator: quote it", s)
	}
	return s, nil
}

// flowParser reads one-line flow collections: [a, "b", {k: v}].
type flowParser struct {
	s string
	i int
}

func (f *flowParser) skipSpace() {
	for f.i < len(f.s) && (f.s[f.i] == ' ' || f.s[f.i] == '\t') {
		f.i++
	}
}

func (f *flowParser) value() (any, error) {
	f.skipSpace()
	if f.i >= len(f.s) {
		return nil, fmt.Errorf("unexpected end of flow collection %q", f.s)
	}
	switch c := f.s[f.i]; c {
	case '[':
		f.i++
		list := []any{}
		for {
			f.skipSpace()
			if f.i < len(f.s) && f.s[f.i] == ']' {
				f.i++
				return list, nil
			}
			v, err := f.value()
			if err != nil {
				return nil, err
			}
			list = append(list, v)
			f.skipSpace()
			if f.i < len(f.s) && f.s[f.i] == ',' {
				f.i++
				continue
			}
			if f.i < len(f.s) && f.s[f.i] == ']' {
				f.i++
				return list, nil
			}
			return nil, fmt.Errorf("expected ',' or ']' in %q", f.s)
		}
	case '{':
		f.i++
		m := map[string]any{}
		for {
			f.skipSpace()
			if f.i < len(f.s) && f.s[f.i] == '}' {
				f.i++
				return m, nil
			}
			k, err := f.scalar(true)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				ks = fmt.Sprint(k)
			}
			f.skipSpace()
			if f.i >= len(f.s) || f.s[f.i] != ':' {
				return nil, fmt.Errorf("expected ':' in %q", f.s)
			}
			f.i++
			v, err := f.value()
			if err != nil {
				return nil, err
			}
			if _, dup := m[ks]; dup {
				return nil, fmt.Errorf("duplicate key %q", ks)
			}
			m[ks] = v
			f.skipSpace()
			if f.i < len(f.s) && f.s[f.i] == ',' {
				f.i++
				continue
			}
			if f.i < len(f.s) && f.s[f.i] == '}' {
				f.i++
				return m, nil
			}
			return nil, fmt.Errorf("expected ',' or '}' in %q", f.s)
		}
	}
	return f.scalar(false)
}

func (f *flowParser) scalar(isKey bool) (any, error) {
	f.skipSpace()
	if f.i < len(f.s) && (f.s[f.i] == '"' || f.s[f.i] == '\'') {
		s, n, err := parseQuoted(f.s[f.i:])
		if err != nil {
			return nil, err
		}
		f.i += n
		return s, nil
	}
	start := f.i
	for f.i < len(f.s) {
		c := f.s[f.i]
		if c == ',' || c == ']' || c == '}' || c == '[' || c == '{' {
			break
		}
		if c == ':' && (isKey || f.i+1 >= len(f.s) || f.s[f.i+1] == ' ') {
			break
		}
		f.i++
	}
	text := strings.TrimSpace(f.s[start:f.i])
	if isKey {
		return text, nil // keys are strings, whatever they look like
	}
	return resolvePlain(text)
}

// ---- emitter (toYaml): sorted keys, sequences not indented under their key, like Helm's toYaml.

var reNeedsQuote = regexp.MustCompile(`^[-?:,\[\]{}#&*!|>'"%@` + "`" + `]|: | #|:$|^\s|\s$|^$`)

func yamlScalar(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return formatNumber(x)
	case float32:
		return formatNumber(float64(x))
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		if r, err := resolvePlain(x); err != nil || r != any(x) || reNeedsQuote.MatchString(x) ||
			strings.ContainsAny(x, "\n\t\"\\") {
			return quoteDouble(x)
		}
		return x
	}
	return quoteDouble(fmt.Sprint(v))
}

func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func quoteDouble(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ToYAML renders v as block YAML without a trailing newline.
func ToYAML(v any) string {
	var b strings.Builder
	emitYAML(&b, v, 0)
	return strings.TrimRight(b.String(), "\n")
}

func emitYAML(b *strings.Builder, v any, indent int) {
	pad := strings.Repeat(" ", indent)
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString(pad + "{}\n")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			emitEntry(b, pad+yamlScalar(k)+":", x[k], indent, true)
		}
	case []any:
		if len(x) == 0 {
			b.WriteString(pad + "[]\n")
			return
		}
		for _, e := range x {
			emitEntry(b, pad+"-", e, indent, false)
		}
	default:
		b.WriteString(pad + yamlScalar(v) + "\n")
	}
}

// emitEntry writes "key:" or "-" followed by the value, nested as Helm's toYaml nests it.
func emitEntry(b *strings.Builder, head string, v any, indent int, isKey bool) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString(head + " {}\n")
			return
		}
		if isKey {
			b.WriteString(head + "\n")
			emitYAML(b, x, indent+2)
			return
		}
		var sub strings.Builder
		emitYAML(&sub, x, indent+2)
		s := sub.String()
		b.WriteString(head + " " + s[indent+2:])
	case []any:
		if len(x) == 0 {
			b.WriteString(head + " []\n")
			return
		}
		if isKey {
			b.WriteString(head + "\n")
			emitYAML(b, x, indent)
			return
		}
		var sub strings.Builder
		emitYAML(&sub, x, indent+2)
		s := sub.String()
		b.WriteString(head + " " + s[indent+2:])
	default:
		b.WriteString(head + " " + yamlScalar(v) + "\n")
	}
}
