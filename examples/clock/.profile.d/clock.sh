# Sourced before every process, as on Heroku.
export CLOCK_STARTED_BY=zeroku
