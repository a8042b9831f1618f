// main.go — `render`: renders a Helm chart the way `helm template` does (for the functions the chart
// uses) and validates what comes out, so the chart is tested where no helm binary exists.
//
//	render template CHART [-f values.yaml]... [--set a.b=v]... [--name R] [--namespace NS] [--json]
//	render tojson FILE...                      YAML documents -> one JSON array
//	render validate --crds DIR --builtin FILE DOCS.json
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: render template|tojson|validate ...")
	}
	var err error
	switch os.Args[1] {
	case "template":
		err = cmdTemplate(os.Args[2:])
	case "tojson":
		err = cmdToJSON(os.Args[2:])
	case "validate":
		err = cmdValidate(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		die("%v", err)
	}
}

func readYAMLFile(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseYAML(path, string(b))
}

// mergeValues overlays src onto dst as Helm does: maps merge key by key, a null deletes the key,
// anything else replaces.
func mergeValues(dst, src map[string]any) map[string]any {
	out := make(map[string]any, len(dst))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if v == nil {
			delete(out, k)
			continue
		}
		sm, sok := v.(map[string]any)
		dm, dok := out[k].(map[string]any)
		if sok && dok {
			out[k] = mergeValues(dm, sm)
		} else {
			out[k] = v
		}
	}
	return out
}

func setValue(vals map[string]any, expr string) error {
	eq := strings.IndexByte(expr, '=')
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected key=value", expr)
	}
	path := strings.Split(expr[:eq], ".")
	var v any = expr[eq+1:]
	if r, err := resolvePlain(expr[eq+1:]); err == nil {
		v = r
	}
	m := vals
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
	return nil
}

type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type renderOpts struct {
	chart, name, namespace string
	valueFiles, sets       []string
	asJSON                 bool
}

func cmdTemplate(args []string) error {
	o := renderOpts{name: "release-name", namespace: "default"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch a {
		case "-f", "--values":
			var f string
			f, err = next()
			o.valueFiles = append(o.valueFiles, f)
		case "--set":
			var s string
			s, err = next()
			o.sets = append(o.sets, s)
		case "--name":
			o.name, err = next()
		case "--namespace", "-n":
			o.namespace, err = next()
		case "--json":
			o.asJSON = true
		default:
			if strings.HasPrefix(a, "-") || o.chart != "" {
				return fmt.Errorf("unexpected argument %q", a)
			}
			o.chart = a
		}
		if err != nil {
			return err
		}
	}
	if o.chart == "" {
		return errors.New("template: no chart folder given")
	}
	files, err := renderChart(o)
	if err != nil {
		return err
	}
	if o.asJSON {
		var docs []any
		for _, f := range files {
			d, err := ParseYAMLDocs(f.name, f.text)
			if err != nil {
				return fmt.Errorf("rendered output does not parse: %v\n--- %s ---\n%s", err, f.name, numbered(f.text))
			}
			for _, x := range d {
				if _, ok := x.(map[string]any); !ok {
					return fmt.Errorf("%s: a rendered document is not a mapping", f.name)
				}
				docs = append(docs, map[string]any{"source": f.name, "object": x})
			}
		}
		b, err := json.MarshalIndent(docs, "", " ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	for _, f := range files {
		for _, doc := range splitDocs(f.text) {
			fmt.Printf("---\n# Source: %s\n%s\n", f.name, doc)
		}
	}
	return nil
}

func numbered(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = fmt.Sprintf("%4d  %s", i+1, lines[i])
	}
	return strings.Join(lines, "\n")
}

// splitDocs cuts one template's output at '---' lines, dropping empty documents as Helm does.
func splitDocs(text string) []string {
	var out []string
	var cur []string
	flush := func() {
		d := strings.Trim(strings.Join(cur, "\n"), "\n")
		if strings.TrimSpace(d) != "" {
			out = append(out, d)
		}
		cur = nil
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimRight(l, " ") == "---" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return out
}

type renderedFile struct{ name, text string }

func renderChart(o renderOpts) ([]renderedFile, error) {
	chartMeta, err := readYAMLFile(filepath.Join(o.chart, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	cm, ok := chartMeta.(map[string]any)
	if !ok {
		return nil, errors.New("Chart.yaml is not a mapping")
	}
	for _, k := range []string{"apiVersion", "name", "version"} {
		if s, _ := cm[k].(string); s == "" {
			return nil, fmt.Errorf("Chart.yaml: %s is required (a string)", k)
		}
	}
	chartName := cm["name"].(string)
	defaults, err := readYAMLFile(filepath.Join(o.chart, "values.yaml"))
	if err != nil {
		return nil, err
	}
	vals, ok := defaults.(map[string]any)
	if !ok {
		return nil, errors.New("values.yaml is not a mapping")
	}
	for _, f := range o.valueFiles {
		v, err := readYAMLFile(f)
		if err != nil {
			return nil, err
		}
		vm, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is not a mapping", f)
		}
		vals = mergeValues(vals, vm)
	}
	for _, s := range o.sets {
		if err := setValue(vals, s); err != nil {
			return nil, err
		}
	}
	if b, err := os.ReadFile(filepath.Join(o.chart, "values.schema.json")); err == nil {
		var schema map[string]any
		if err := json.Unmarshal(b, &schema); err != nil {
			return nil, fmt.Errorf("values.schema.json: %v", err)
		}
		if errs := Validate(schema, schema, vals, false); len(errs) > 0 {
			return nil, fmt.Errorf("values don't meet the specifications of the schema(s):\n- %s",
				strings.Join(errs, "\n- "))
		}
	}
	chart := map[string]any{}
	for k, v := range cm {
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	top := map[string]any{
		"Values": vals,
		"Chart":  chart,
		"Release": map[string]any{"Name": o.name, "Namespace": o.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Capabilities": map[string]any{
			"KubeVersion": map[string]any{"Version": "v1.30.0", "Major": "1", "Minor": "30", "GitVersion": "v1.30.0"},
			"APIVersions": apiVersions{"v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1"},
		},
	}
	tdir := filepath.Join(o.chart, "templates")
	var names []string
	err = filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var root *template.Template
	root = template.New(chartName).Funcs(templateFuncs(&root)).Option("missingkey=zero")
	for _, p := range names {
		rel, _ := filepath.Rel(o.chart, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if _, err := root.New(chartName + "/" + filepath.ToSlash(rel)).Parse(string(b)); err != nil {
			return nil, err
		}
	}
	var out []renderedFile
	for _, p := range names {
		rel, _ := filepath.Rel(o.chart, p)
		name := chartName + "/" + filepath.ToSlash(rel)
		base := filepath.Base(p)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]any{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]any{"Name": name, "BasePath": chartName + "/templates"}
		var b strings.Builder
		if err := root.ExecuteTemplate(&b, name, data); err != nil {
			return nil, err
		}
		text := strings.ReplaceAll(b.String(), "<no value>", "")
		if base == "NOTES.txt" {
			continue // rendered (so it must compile and run) but, as in `helm template`, not printed
		}
		out = append(out, renderedFile{name, text})
	}
	return out, nil
}

func cmdToJSON(args []string) error {
	var all []any
	for _, f := range args {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		docs, err := ParseYAMLDocs(f, string(b))
		if err != nil {
			return err
		}
		all = append(all, docs...)
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// cmdValidate checks rendered objects ([{source, object}] as `template --json` prints) against the
// CRDs' schemas (custom kinds) or builtin.json (built-in kinds; PodTemplateSpec is taken from the
// LeaderWorkerSet CRD, which embeds core/v1's). Every object's metadata is checked as ObjectMeta.
func cmdValidate(args []string) error {
	var crdDir, builtinPath, docsPath string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--crds" && i+1 < len(args):
			i++
			crdDir = args[i]
		case args[i] == "--builtin" && i+1 < len(args):
			i++
			builtinPath = args[i]
		case !strings.HasPrefix(args[i], "-") && docsPath == "":
			docsPath = args[i]
		default:
			return fmt.Errorf("validate: unexpected argument %q", args[i])
		}
	}
	if crdDir == "" || builtinPath == "" || docsPath == "" {
		return errors.New("usage: render validate --crds DIR --builtin FILE DOCS.json")
	}
	schemas := map[string]map[string]any{} // "apiVersion Kind" -> schema
	crdFiles, _ := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	var podTemplate map[string]any
	for _, f := range crdFiles {
		d, err := readYAMLFile(f)
		if err != nil {
			return err
		}
		crd, _ := d.(map[string]any)
		spec, _ := crd["spec"].(map[string]any)
		group, _ := spec["group"].(string)
		names, _ := spec["names"].(map[string]any)
		kind, _ := names["kind"].(string)
		vers, _ := spec["versions"].([]any)
		for _, v := range vers {
			vm, _ := v.(map[string]any)
			sch, _ := dig(vm, "schema", "openAPIV3Schema").(map[string]any)
			if sch == nil || vm["served"] != true {
				continue
			}
			schemas[fmt.Sprintf("%s/%s %s", group, vm["name"], kind)] = sch
			if kind == "LeaderWorkerSet" && podTemplate == nil {
				podTemplate, _ = dig(sch, "properties", "spec", "properties", "leaderWorkerTemplate",
					"properties", "workerTemplate").(map[string]any)
			}
		}
	}
	if podTemplate == nil {
		return errors.New("validate: the LeaderWorkerSet CRD (for PodTemplateSpec) was not found in " + crdDir)
	}
	bb, err := os.ReadFile(builtinPath)
	if err != nil {
		return err
	}
	var builtin map[string]any
	if err := json.Unmarshal(bb, &builtin); err != nil {
		return fmt.Errorf("%s: %v", builtinPath, err)
	}
	defs, _ := builtin["definitions"].(map[string]any)
	if defs == nil {
		return fmt.Errorf("%s: no definitions", builtinPath)
	}
	defs["PodTemplateSpec"] = podTemplate
	kinds, _ := builtin["kinds"].(map[string]any)
	for k, v := range kinds {
		if m, ok := v.(map[string]any); ok {
			schemas[k] = m
		}
	}
	objectMeta, _ := defs["ObjectMeta"].(map[string]any)
	db, err := os.ReadFile(docsPath)
	if err != nil {
		return err
	}
	var docs []map[string]any
	if err := json.Unmarshal(db, &docs); err != nil {
		return fmt.Errorf("%s: %v", docsPath, err)
	}
	var problems []string
	for _, d := range docs {
		obj, _ := d["object"].(map[string]any)
		api, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		meta, _ := obj["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		where := fmt.Sprintf("%s %s %q (%v)", api, kind, name, d["source"])
		sch := schemas[api+" "+kind]
		if sch == nil {
			problems = append(problems, where+": no schema for this apiVersion/kind")
			continue
		}
		errs := Validate(sch, builtin, obj, true)
		errs = append(errs, ValidateAt(objectMeta, builtin, obj["metadata"], true, "metadata")...)
		for _, e := range errs {
			problems = append(problems, where+": "+e)
		}
		fmt.Printf("checked %s\n", where)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d schema violation(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}
