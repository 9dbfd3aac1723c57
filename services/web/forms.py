"""Form handling shared by every page: the error summary, errors on their fields, values kept, and
the NHS date input (day, month, year)."""

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from starlette.datastructures import FormData

from services.web.backend import ApiError


@dataclass
class Form:
    """What a person typed, and what is wrong with it: `errors` maps a field's id to its message, in
    the order the error summary lists them."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, data: FormData) -> "Form":
        values: dict[str, Any] = {}
        for key in data:
            if key == "csrf_token":
                continue
            items = [v for v in data.getlist(key) if isinstance(v, str)]
            values[key] = items if len(items) > 1 else (items[0] if items else "")
        return cls(values=values)

    def get(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        return value if isinstance(value, str) else (value[0] if value else default)

    def getlist(self, key: str) -> list[str]:
        value = self.values.get(key)
        if value is None or value == "":
            return []
        return value if isinstance(value, list) else [value]

    def text(self, key: str, message: str | None = None, max_length: int | None = None) -> str | None:
        """The trimmed value; an error if it is required (message given) and empty, or too long."""
        value = self.get(key).strip()
        if not value:
            if message:
                self.error(key, message)
            return None
        if max_length and len(value) > max_length:
            self.error(key, f"Must be {max_length} characters or fewer")
            return None
        return value

    def choice(self, key: str, allowed: list[str], message: str) -> str | None:
        value = self.get(key)
        if value not in allowed:
            self.error(key, message)
            return None
        return value

    def date(self, key: str, label: str, required: bool = True) -> date | None:
        """The NHS date input: `<key>-day`, `<key>-month`, `<key>-year`; the error names what is wrong."""
        parts = {p: self.get(f"{key}-{p}").strip() for p in ("day", "month", "year")}
        if not any(parts.values()):
            if required:
                self.error(key, f"Enter {label}")
            return None
        missing = [p for p, v in parts.items() if not v]
        if missing:
            self.error(key, f"{label[0].upper()}{label[1:]} must include a {' and '.join(missing)}")
            return None
        try:
            day, month, year = int(parts["day"]), int(parts["month"]), int(parts["year"])
            if year < 1900 or year > 2200:
                raise ValueError
            return date(year, month, day)
        except ValueError:
            self.error(key, f"{label[0].upper()}{label[1:]} must be a real date")
            return None

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(key, message)

    @property
    def ok(self) -> bool:
        return not self.errors

    def absorb(self, error: ApiError, fields: dict[str, str] | None = None, default: str = "") -> None:
        """A service's refusal on the fields it names: `fields` maps the API's field names to this
        form's ids; whatever names no field goes on `default` (the form's main field) or the summary."""
        fields = fields or {}
        named = False
        for item in error.field_errors:
            api_field = str(item.get("field", ""))
            key = fields.get(api_field) or fields.get(api_field.split(".")[0]) or api_field.split(".")[0]
            if key in ("", "(body)"):
                continue
            self.error(key, _sentence(str(item.get("message", "is not valid"))))
            named = True
        missing = error.problem.get("missing")
        if isinstance(missing, list) and missing:
            for item in missing:
                self.error(f"missing-{len(self.errors)}", _sentence(str(item)))
            named = True
        if not named:
            self.error(default or "form", _sentence(error.detail or "The service refused this"))


def _sentence(message: str) -> str:
    message = message.strip()
    return message[0].upper() + message[1:] if message else message
