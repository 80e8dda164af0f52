-- Four-eyes promotion, as `policy.create` set it and `policy.configure` changes it
-- (PolicyCreated / PolicyConfigured), shown by `policy.get` and `policy.list`. Rows of policies
-- created before this column read as without (what their PolicyCreated says when it omits it).
ALTER TABLE policies ADD COLUMN require_second_approver boolean NOT NULL DEFAULT false;
