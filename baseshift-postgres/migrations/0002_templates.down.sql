DROP TABLE IF EXISTS template_versions;
DROP TABLE IF EXISTS templates;
