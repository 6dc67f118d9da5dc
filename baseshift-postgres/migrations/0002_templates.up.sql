-- The versioned template catalog (TemplateStore): one row per template id with its
-- latest version, and one row per stored version.

CREATE TABLE templates (
    template_id    text COLLATE "C" PRIMARY KEY,
    name           text NOT NULL,
    latest_version text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE template_versions (
    template_id text COLLATE "C" NOT NULL REFERENCES templates (template_id) ON DELETE CASCADE,
    version     text NOT NULL,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);
