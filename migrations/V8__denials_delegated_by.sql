-- A delegate (the HTTP adapter, the console) sends requests for people: a denial names the
-- person in "user" and the delegate here (NULL when the user sent the request themselves).
ALTER TABLE denials ADD COLUMN delegated_by text;
