"""Made-up credentials in each issuer's format, planted in hostile-input tests; none is a live credential.

Each entry: (name, a line of text holding it, the secret value that must never appear in clear)."""

from __future__ import annotations

import base64
import json


def _b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# Made-up values in each issuer's format; none of them is a live credential.
JWT = f"{_b64url({'alg': 'HS256', 'typ': 'JWT'})}.{_b64url({'sub': '1234567890', 'name': 'Jo'})}.SflKxwRJSMeKKF2QT4fwpM"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
OPENAI_LEGACY = "sk-" + "Ab3dE" * 4 + "T3BlbkFJ" + "Zy9xW" * 4
OPENAI_PROJECT = "sk-proj-" + "Q1w2E3r4T5y6U7i8O9p0_-" * 4
GITLAB = "glpat-xY7kP2mN9qR4sT6vW8zA"
AZURE_KEY = "Kq7vN2pX9rT4wY6zA1cE3gI5kM8oQ0sU2wY4aC6eG8iK0mO2qS4uW6yA8cE0gI2kM4oQ6sU8wY0aC2eG4iK6mO8q1A=="
AWS_ID = "AKIAQ3EGRWXZ7PLMN4OV"
AWS_SECRET = "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"
GITHUB = "ghp_" + "R2d2C3p0" * 4 + "Xy12"
URL_USER_PASS = "deploy:S3cr3t-Pa55w0rd"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\n"
    "-----END RSA PRIVATE KEY-----"
)

PLANTED = [
    ("jwt", f"Authorization: Bearer {JWT}\n", JWT),
    ("hf", f"HF_TOKEN={HF} python train.py", HF),
    ("openai-legacy", f'openai.api_key = "{OPENAI_LEGACY}"', OPENAI_LEGACY),
    ("openai-project", f"export OPENAI_API_KEY={OPENAI_PROJECT}", OPENAI_PROJECT),
    ("gitlab", f"git clone https://oauth2@gitlab.com/x.git  # token {GITLAB}", GITLAB),
    (
        "azure",
        f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
        AZURE_KEY,
    ),
    ("url-credentials", f"DATABASE_URL=postgres://{URL_USER_PASS}@db.internal:5432/app", URL_USER_PASS),
    ("aws-key-id", f"aws_access_key_id = {AWS_ID}", AWS_ID),
    ("aws-secret", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ("github", f"GITHUB_TOKEN={GITHUB}", GITHUB),
    ("pem", f"key:\n{PEM}\nend", PEM),
]
