-- Collaborative works (several promoters sharing one excavation) per month, highway authority and
-- promoter: of the works in progress or completed in the month (int_permit_months), how many were
-- collaborative. `collaborative_working` is absent from older data: those works count as unknown,
-- not as non-collaborative (the seed project counted them as "No"). DfT test data is left out.
{{ config(tags=['street_manager']) }}

-- collaborative_share: of the works whose collaboration is known
{{ works_per_authority_and_promoter(
    works_where="work_status_ref in ('in_progress', 'completed')",
    measures=[
        ['count(*) filter (where is_collaborative)', 'collaborative_works'],
        ['count(*) filter (where not is_collaborative)', 'non_collaborative_works'],
        ['count(*) filter (where is_collaborative is null)', 'collaboration_unknown_works'],
        ['count(*) filter (where is_collaborative) / nullif(count(*) filter (where is_collaborative is not null), 0)',
         'collaborative_share'],
    ]) }}
