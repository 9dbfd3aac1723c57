# One image for all five LeDeR services and the web application. Which one a container runs is its
# command:
#   docker run leder leder serve allocation
#   docker run leder leder serve web
# (docker-compose.yml gives each its own command; the default below runs notification.)
# Health is checked by docker-compose.yml, not here.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its dependencies into a virtual environment -------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a change to the code reuses this layer.
# (Only [project].dependencies: the dev extras never enter the image.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the code. `pip install .` builds a regular (non-editable) install into the venv, SQL migrations,
# JSON schemas and the web application's templates and static files (services/web/templates,
# services/web/static: pyproject.toml's package-data) included; nothing from /src is needed at run time.
COPY events ./events
COPY infra ./infra
COPY leder ./leder
COPY services ./services
RUN pip install .

# --- runtime: the venv on a clean base, run by an unprivileged user ---------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 leder \
    && useradd --system --uid 10001 --gid leder --create-home --home-dir /home/leder \
        --shell /usr/sbin/nologin leder

COPY --from=build /opt/venv /opt/venv

WORKDIR /home/leder
USER 10001:10001

# the web application (services/web/settings.py WEB_PORT); notification, allocation, review,
# governance, audit (infra/settings.py SERVICE_PORTS)
EXPOSE 8000 8001 8002 8003 8004 8005

CMD ["leder", "serve", "notification"]
