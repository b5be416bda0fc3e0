-- Works in progress and completed in the month, per highway authority and promoter: the seed
-- project's monthly in-progress and completed lists, counted. A permit counts in a month by its
-- status at the month's last event (int_permit_months), so it is in progress or completed in a
-- month, never both; `permits` is every permit with an event in the month's archive. DfT test
-- data is left out. Names come from the swa_codes seed, else the latest published name.
{{ config(tags=['street_manager']) }}

{{ works_per_authority_and_promoter(
    total='permits',
    statuses=['in_progress', 'completed', 'planned', 'cancelled']) }}
