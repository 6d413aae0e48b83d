package schema

// ParamsJSONSchema describes the command's parameters as a JSON Schema
// (draft 2020-12) object, so that a client can build a form or check a
// request before sending it: types, required, defaults, enums, patterns,
// ranges, help as description. Secret parameters carry "writeOnly": true
// and "format": "password" (a form shows a password field). Additional
// properties are refused, as ValidateParams refuses them.
func (c CommandSpec) ParamsJSONSchema() map[string]any {
	props := map[string]any{}
	required := []string{}
	for _, name := range c.ParamNames() {
		p := c.Params[name]
		s := map[string]any{}
		switch p.Type {
		case TypeString:
			s["type"] = "string"
		case TypeEnum:
			s["type"] = "string"
			s["enum"] = p.Values
		case TypeInt:
			s["type"] = "integer"
		case TypeFloat:
			s["type"] = "number"
		case TypeBool:
			s["type"] = "boolean"
		case TypeList:
			items := map[string]any{"type": "string"}
			if p.Pattern != "" {
				items["pattern"] = p.Pattern
			}
			s["type"] = "array"
			s["items"] = items
		}
		if p.Pattern != "" && p.Type != TypeList {
			s["pattern"] = p.Pattern
		}
		if p.Min != nil {
			s["minimum"] = *p.Min
		}
		if p.Max != nil {
			s["maximum"] = *p.Max
		}
		if p.Help != "" {
			s["description"] = p.Help
		}
		if p.Default != nil {
			if d, err := p.coerce(p.Default); err == nil {
				s["default"] = d
			}
		}
		if p.Secret {
			s["writeOnly"] = true
			s["format"] = "password"
		}
		props[name] = s
		if p.Required {
			required = append(required, name)
		}
	}
	return map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}
}
