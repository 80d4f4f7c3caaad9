-- ACME HTTP-01 challenges in progress (issue 18): the key authorization each token must
-- be answered with, shared by every node, so the CA's validation request may reach any.
CREATE TABLE acme_challenges (
    token              TEXT PRIMARY KEY,
    key_authorization  TEXT NOT NULL,
    expires_at         INTEGER NOT NULL
);
